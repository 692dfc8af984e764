// Invites, both sides. The operator invites an LP to a machine, by LNbits
// username or with a one-time code/link, and sees or revokes the pending
// ones (LPs & deposits tab). The LP opens the link (the page with
// ?invite=CODE) or types the code, sees the machine and its currency, picks
// the wallet that receives the sats and accepts: that creates the position.

window.SMInvites = {
  data() {
    return {
      invites: [],
      invitesLoading: false,
      inviteDialog: {show: false, saving: false, data: {}, created: null},
      acceptDialog: {
        show: false,
        loading: false,
        saving: false,
        code: '',
        invite: null,
        wallet_id: null,
        error: ''
      },
      inviteColumns: [
        {name: 'machine', get label() { return SM.t('fixed_machine') }, field: 'machine_id', align: 'left'},
        {name: 'who', get label() { return SM.t('invites_for_2') }, field: 'username', align: 'left'},
        {name: 'code', get label() { return SM.t('invites_code') }, field: 'code', align: 'left'},
        {name: 'expires', get label() { return SM.t('invites_expires') }, field: 'expires_at', align: 'left'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ]
    }
  },
  computed: {
    // Accepted or revoked invites are not pending, whatever the API lists.
    pendingInvites() {
      return this.invites.filter(
        i => !i.accepted_at && !i.revoked_at && (!i.status || i.status === 'pending')
      )
    }
  },
  methods: {
    // --- the operator's side --------------------------------------------------
    async loadInvites() {
      this.invitesLoading = true
      try {
        this.invites = await SM.request('GET', '/invites')
      } catch (error) {
        SM.notifyError(error, SM.t('invites_could_not_load_the_invites'))
      } finally {
        this.invitesLoading = false
      }
    },
    openInviteDialog() {
      this.inviteDialog.data = {
        machine_id:
          this.lpMachineFilter ||
          (this.machines.length ? this.machines[0].id : null),
        username: ''
      }
      this.inviteDialog.created = null
      this.inviteDialog.show = true
    },
    async createInvite() {
      const d = this.inviteDialog.data
      this.inviteDialog.saving = true
      try {
        const body = {machine_id: d.machine_id}
        if (d.username.trim()) body.username = d.username.trim()
        this.inviteDialog.created = await SM.request('POST', '/invites', body)
        SM.notifyDone(
          body.username
            ? SM.t('invites_invited', {name: body.username})
            : SM.t('invites_invite_created_send_the_link')
        )
        await this.loadInvites()
      } catch (error) {
        SM.notifyError(error, SM.t('invites_could_not_create_the_invite'))
      } finally {
        this.inviteDialog.saving = false
      }
    },
    // The link the LP opens: the API's url, else this page with ?invite=.
    inviteUrl(invite) {
      if (invite.url) {
        return new URL(invite.url, window.location.origin).toString()
      }
      const url = new URL(window.location.pathname, window.location.origin)
      url.searchParams.set('invite', invite.code)
      return url.toString()
    },
    revokeInvite(invite) {
      LNbits.utils
        .confirmDialog(
          invite.username
            ? SM.t('invites_revoke_for', {
                machine: this.machineName(invite.machine_id),
                name: invite.username
              })
            : SM.t('invites_revoke', {
                machine: this.machineName(invite.machine_id)
              })
        )
        .onOk(async () => {
          try {
            await SM.request('DELETE', `/invites/${invite.id}`)
            SM.notifyDone(SM.t('invites_invite_revoked'))
            await this.loadInvites()
          } catch (error) {
            SM.notifyError(error, SM.t('invites_could_not_revoke_the_invite'))
          }
        })
    },

    // --- the LP's side --------------------------------------------------------
    // A code typed by hand may be the whole link: keep the code only.
    inviteCodeFrom(text) {
      const value = String(text || '').trim()
      try {
        const code = new URL(value).searchParams.get('invite')
        if (code) return code
      } catch (e) {
        // not a link: the code itself
      }
      return value
    },
    openAcceptDialog(code) {
      Object.assign(this.acceptDialog, {
        show: true,
        loading: false,
        saving: false,
        code: code || '',
        invite: null,
        error: '',
        wallet_id: this.ownWallets.length ? this.ownWallets[0].id : null
      })
      if (code) return this.lookUpInvite()
    },
    async lookUpInvite() {
      const dialog = this.acceptDialog
      const code = this.inviteCodeFrom(dialog.code)
      if (!code) return
      dialog.code = code
      dialog.loading = true
      dialog.error = ''
      dialog.invite = null
      try {
        dialog.invite = await SM.request(
          'GET',
          `/lp/invites/${encodeURIComponent(code)}`
        )
      } catch (error) {
        dialog.error = SM.errorText(error)
      } finally {
        dialog.loading = false
      }
    },
    async acceptInvite() {
      const dialog = this.acceptDialog
      dialog.saving = true
      try {
        await SM.request(
          'POST',
          `/lp/invites/${encodeURIComponent(dialog.code)}/accept`,
          {wallet_id: dialog.wallet_id}
        )
        SM.notifyDone(
          SM.t('invites_now_an_lp', {
            machine: dialog.invite.machine_name || SM.t('invites_the_machine')
          })
        )
        dialog.show = false
        this.forgetInviteInUrl()
        await this.loadPositions()
        this.tab = 'positions'
      } catch (error) {
        SM.notifyError(error, SM.t('invites_could_not_accept_the_invite'))
      } finally {
        dialog.saving = false
      }
    },
    forgetInviteInUrl() {
      const url = new URL(window.location.href)
      if (!url.searchParams.has('invite')) return
      url.searchParams.delete('invite')
      window.history.replaceState(null, '', url.toString())
    },
    // Called once the page has started: the invite link opens the dialog.
    openInviteFromUrl() {
      const code = new URL(window.location.href).searchParams.get('invite')
      if (code) this.openAcceptDialog(code)
    }
  }
}
