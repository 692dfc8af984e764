// Machines tab: the operator's ATMs, each bound to one of their wallets.

window.SMMachines = {
  data() {
    return {
      machines: [],
      machinesLoading: false,
      machinesLoaded: false,
      lastSettlements: {},
      currencyNeedle: '',
      machineDialog: {
        show: false,
        saving: false,
        id: null,
        source: null, // the saved source of the machine being edited
        data: {}
      },
      machineColumns: [
        {
          name: 'name',
          get label() { return SM.t('fixed_machine') },
          field: 'name',
          align: 'left',
          sortable: true
        },
        {name: 'currency', get label() { return SM.t('invites_currency') }, field: 'currency', align: 'left'},
        {name: 'wallet', get label() { return SM.t('platform_wallet') }, field: 'wallet_id', align: 'left'},
        {
          name: 'balance',
          get label() { return SM.t('platform_wallet_balance') },
          field: 'wallet_id',
          align: 'right'
        },
        {name: 'last', get label() { return SM.t('machines_last_settlement') }, field: 'id', align: 'left'},
        {name: 'status', get label() { return SM.t('lps_status') }, field: 'is_active', align: 'left'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ]
    }
  },
  computed: {
    machineById() {
      return Object.fromEntries(this.machines.map(m => [m.id, m]))
    },
    machineOptions() {
      return this.machines.map(m => ({
        value: m.id,
        label: `${m.name} (${m.currency})${m.is_active ? '' : SM.t('machines_inactive')}`
      }))
    },
    // Wallets not bound to a machine yet: a wallet belongs to one machine.
    freeWalletOptions() {
      const bound = new Set(this.machines.map(m => m.wallet_id))
      return this.ownWalletOptions.filter(o => !bound.has(o.value))
    },
    currencyOptions() {
      const needle = this.currencyNeedle
      return (this.g.currencies || []).filter(
        c => c !== 'BTC' && c !== 'sat' && (!needle || c.includes(needle))
      )
    }
  },
  methods: {
    async loadMachines() {
      this.machinesLoading = true
      try {
        this.machines = await SM.request('GET', '/machines', null, {
          limit: 1000
        })
        this.machinesLoaded = true
        await Promise.all([
          this.loadLastSettlements(),
          this.refreshWalletBalances()
        ])
      } catch (error) {
        SM.notifyError(error, SM.t('machines_could_not_load_your_machines'))
      } finally {
        this.machinesLoading = false
      }
    },
    async loadLastSettlements() {
      const entries = await Promise.all(
        this.machines.map(async m => {
          try {
            const rows = await SM.request(
              'GET',
              `/machines/${m.id}/settlements`,
              null,
              {
                limit: 1
              }
            )
            return [m.id, rows[0] || null]
          } catch (error) {
            return [m.id, null]
          }
        })
      )
      this.lastSettlements = Object.fromEntries(entries)
    },
    openMachineDialog(machine) {
      if (machine) {
        this.machineDialog.id = machine.id
        this.machineDialog.source = machine.source || 'bitspire'
        this.machineDialog.data = {
          npub: machine.npub,
          source: machine.source || 'bitspire',
          name: machine.name,
          currency: machine.currency,
          wallet_id: machine.wallet_id,
          fallback_percent:
            machine.fallback_commission_pct === null
              ? ''
              : SM.fractionToPercentText(machine.fallback_commission_pct)
        }
      } else {
        this.machineDialog.id = null
        this.machineDialog.source = null
        this.machineDialog.data = {
          npub: '',
          source: 'bitspire',
          name: '',
          currency: this.machines.length ? this.machines[0].currency : 'USD',
          wallet_id: this.freeWalletOptions.length
            ? this.freeWalletOptions[0].value
            : null,
          fallback_percent: ''
        }
      }
      this.machineDialog.show = true
    },
    filterCurrencies(text, update) {
      update(() => {
        this.currencyNeedle = (text || '').trim().toUpperCase()
      })
    },
    npubRule(value) {
      const text = (value || '').trim().toLowerCase()
      return (
        (text.startsWith('npub1') && text.length >= 60) ||
        SM.t('machines_npub_rule')
      )
    },
    fallbackRule(value) {
      if (value === null || value === undefined || String(value).trim() === '')
        return true
      return (
        SM.parsePercent(value) !== null ||
        SM.t('input_percent')
      )
    },
    async saveMachine() {
      const d = this.machineDialog.data
      const fallback = String(d.fallback_percent || '').trim()
      const fraction = fallback
        ? SM.unitsToFraction(SM.parsePercent(fallback))
        : null
      this.machineDialog.saving = true
      try {
        if (this.machineDialog.id) {
          const body = {name: d.name.trim()}
          if (fraction === null) body.clear_fallback = true
          else if (d.source === 'bitspire') body.fallback_commission_pct = fraction
          if (d.source !== this.machineDialog.source) {
            // A change of source (issue 18): settlements stay, it starts now.
            body.source = d.source
            if (d.source === 'bitspire') body.npub = d.npub.trim()
          }
          await SM.request('PUT', `/machines/${this.machineDialog.id}`, body)
          SM.notifyDone(SM.t('machines_saved', {name: d.name}))
        } else {
          const bitspire = d.source === 'bitspire'
          await SM.request('POST', '/machines', {
            source: d.source,
            npub: bitspire ? d.npub.trim() : null,
            name: d.name.trim(),
            currency: (d.currency || '').trim().toUpperCase(),
            wallet_id: d.wallet_id,
            fallback_commission_pct: bitspire ? fraction : null
          })
          SM.notifyDone(SM.t('machines_added', {name: d.name}))
        }
        this.machineDialog.show = false
        await this.loadMachines()
      } catch (error) {
        SM.notifyError(error, SM.t('machines_could_not_save_the_machine'))
      } finally {
        this.machineDialog.saving = false
      }
    },
    async setMachineActive(machine, active) {
      try {
        await SM.request('PUT', `/machines/${machine.id}`, {is_active: active})
        SM.notifyDone(
          SM.t(active ? 'machines_now_active' : 'machines_now_inactive', {
            name: machine.name
          })
        )
        await this.loadMachines()
      } catch (error) {
        SM.notifyError(
          error,
          SM.t(
            active ? 'machines_could_not_activate' : 'machines_could_not_deactivate',
            {name: machine.name}
          )
        )
      }
    },
    deleteMachine(machine) {
      LNbits.utils
        .confirmDialog(
          SM.t('machines_delete_confirm', {name: machine.name})
        )
        .onOk(async () => {
          try {
            await SM.request('DELETE', `/machines/${machine.id}`)
            SM.notifyDone(SM.t('machines_deleted', {name: machine.name}))
            await this.loadMachines()
          } catch (error) {
            SM.notifyError(
              error,
              SM.t('machines_could_not_delete', {name: machine.name})
            )
          }
        })
    },
    machineName(id) {
      const machine = this.machineById[id]
      return machine ? machine.name : SM.shortId(id)
    }
  }
}
