// Lamassu in the field (issue 18): SSH settings of a Lamassu source (the
// extension's public key, the authorized_keys line, pinning the server's host
// key), and the cash-outs dialog: every cash-out the source holds for the
// machine's device with what became of it, ignoring one, importing a period
// of the machine's past after a preview.

window.SMLamassuField = {
  data() {
    return {
      cashOutOutcomes: [
        {value: null, label: 'All'},
        {value: 'landed', label: 'Landed'},
        {value: 'to_land', label: 'Lands at the next poll'},
        {value: 'before_start', label: 'Before the start'},
        {value: 'not_a_sale', label: 'Not a sale'},
        {value: 'ignored', label: 'Ignored'}
      ],
      cashOutColumns: [
        {name: 'created', label: 'Made', field: 'created', align: 'left'},
        {name: 'fiat', label: 'Cash', field: 'fiat', align: 'right'},
        {name: 'crypto_atoms', label: 'Paid (sats)', field: 'crypto_atoms', align: 'right'},
        {name: 'outcome', label: 'Outcome', field: 'outcome', align: 'left'},
        {name: 'reason', label: 'Why', field: 'reason', align: 'left'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ],
      cashOutsDialog: {
        show: false,
        loading: false,
        machine: null,
        status: null,
        rows: [],
        error: null,
        since: '',
        until: '',
        outcome: null,
        importSince: '',
        importUntil: '',
        preview: null,
        importing: false
      }
    }
  },
  methods: {
    lamassuSshData(status) {
      // The SSH part of the Lamassu form, from the saved settings.
      return {
        use_ssh: !!(status && status.ssh_host),
        ssh_host: (status && status.ssh_host) || '',
        ssh_port: (status && status.ssh_port) || 22,
        ssh_user: (status && status.ssh_user) || ''
      }
    },
    lamassuSshBody(data) {
      // What PUT /lamassu takes for SSH; none of it without SSH.
      const body = {...data}
      const ssh = body.use_ssh
      delete body.use_ssh
      if (ssh) {
        body.ssh_port = Number(body.ssh_port) || 22
      } else {
        delete body.ssh_host
        delete body.ssh_port
        delete body.ssh_user
      }
      return body
    },
    async pinLamassuHostKey() {
      const d = this.lamassuDialog
      const fingerprint = d.result && d.result.host_key_fingerprint
      if (!fingerprint) return
      try {
        d.status = await SM.request('POST', `/machines/${d.machine.id}/lamassu/pin-host-key`, {fingerprint})
        SM.notifyDone('Host key pinned: test the connection again')
        d.result = null
      } catch (error) {
        SM.notifyError(error, 'Could not pin the host key')
      }
    },
    copyText(text) {
      if (navigator.clipboard) navigator.clipboard.writeText(text)
      SM.notifyDone('Copied')
    },
    async openCashOuts(machine) {
      const c = this.cashOutsDialog
      c.machine = machine
      c.rows = []
      c.error = null
      c.preview = null
      c.outcome = null
      const weekAgo = new Date(Date.now() - 7 * 86400000)
      c.since = weekAgo.toISOString().slice(0, 10)
      c.until = ''
      c.importSince = ''
      c.importUntil = ''
      c.show = true
      try {
        c.status = await SM.request('GET', `/machines/${machine.id}/lamassu`)
      } catch (error) {
        c.status = null
      }
      await this.loadCashOuts()
    },
    cashOutParams() {
      const c = this.cashOutsDialog
      const params = {limit: 1000}
      if (c.since) params.since = new Date(c.since).toISOString()
      if (c.until) params.until = new Date(c.until).toISOString()
      if (c.outcome) params.outcome = c.outcome
      return params
    },
    async loadCashOuts() {
      const c = this.cashOutsDialog
      c.loading = true
      c.error = null
      try {
        c.rows = await SM.request('GET', `/machines/${c.machine.id}/lamassu/cash-outs`, null, this.cashOutParams())
      } catch (error) {
        c.rows = []
        c.error = (error.response && error.response.data && error.response.data.detail) || String(error)
      } finally {
        c.loading = false
      }
    },
    outcomeLabel(outcome) {
      const found = this.cashOutOutcomes.find(o => o.value === outcome)
      return found ? found.label : outcome
    },
    outcomeColor(outcome) {
      return {landed: 'positive', to_land: 'primary', ignored: 'grey', before_start: 'orange', not_a_sale: 'grey-6'}[outcome] || 'grey'
    },
    async ignoreCashOut(row) {
      const c = this.cashOutsDialog
      const reason = window.prompt('Why is this cash-out ignored? (e.g. paid by hand on 2026-01-05)')
      if (!reason || !reason.trim()) return
      try {
        await SM.request('POST', `/machines/${c.machine.id}/lamassu/cash-outs/${row.id}/ignore`, {reason: reason.trim()})
        SM.notifyDone('Ignored: it never lands')
        await this.loadCashOuts()
      } catch (error) {
        SM.notifyError(error, 'Could not ignore the cash-out')
      }
    },
    async unignoreCashOut(row) {
      const c = this.cashOutsDialog
      try {
        await SM.request('DELETE', `/machines/${c.machine.id}/lamassu/cash-outs/${row.id}/ignore`)
        SM.notifyDone('No longer ignored')
        await this.loadCashOuts()
      } catch (error) {
        SM.notifyError(error, 'Could not un-ignore the cash-out')
      }
    },
    importBody(confirm) {
      const c = this.cashOutsDialog
      const body = {since: new Date(c.importSince).toISOString(), confirm}
      if (c.importUntil) body.until = new Date(c.importUntil).toISOString()
      return body
    },
    async previewImport() {
      const c = this.cashOutsDialog
      if (!c.importSince) return
      c.importing = true
      try {
        c.preview = await SM.request('POST', `/machines/${c.machine.id}/lamassu/import`, this.importBody(false))
      } catch (error) {
        c.preview = null
        SM.notifyError(error, 'Could not preview the import')
      } finally {
        c.importing = false
      }
    },
    async confirmImport() {
      const c = this.cashOutsDialog
      c.importing = true
      try {
        const r = await SM.request('POST', `/machines/${c.machine.id}/lamassu/import`, this.importBody(true))
        SM.notifyDone(`${r.landed} past sale(s) imported: they are paid from the machine wallet`)
        c.preview = null
        await this.loadCashOuts()
        await this.loadMachines()
      } catch (error) {
        SM.notifyError(error, 'Could not import')
      } finally {
        c.importing = false
      }
    }
  }
}
