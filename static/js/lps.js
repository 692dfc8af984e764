// LPs & deposits tab: liquidity providers ("clients") at the operator's
// machines, their fiat deposits and settling a balance in sats.

window.SMClients = {
  data() {
    return {
      clients: [],
      clientBalances: {},
      clientPreferences: {},
      clientsLoading: false,
      clientsLoaded: false,
      lpMachineFilter: null,
      selectedClientId: null,
      clientDialog: {
        show: false,
        saving: false,
        id: null,
        lpManaged: false,
        data: {}
      },
      deposits: [],
      depositsLoading: false,
      depositDialog: {
        show: false,
        saving: false,
        id: null,
        client: null,
        data: {}
      },
      settleDialog: {show: false, saving: false, client: null, data: {}},
      clientColumns: [
        {
          name: 'lp',
          get label() { return SM.t('lps_lp') },
          field: 'username',
          align: 'left',
          sortable: true
        },
        {name: 'machine', get label() { return SM.t('fixed_machine') }, field: 'machine_id', align: 'left'},
        {name: 'mode', get label() { return SM.t('lps_mode') }, field: 'dca_mode', align: 'left'},
        {name: 'status', get label() { return SM.t('lps_status') }, field: 'status', align: 'left'},
        {name: 'remaining', get label() { return SM.t('positions_balance_left') }, field: 'id', align: 'right'},
        {name: 'sats', get label() { return SM.t('lps_sats_received') }, field: 'id', align: 'right'},
        {name: 'average', get label() { return SM.t('lps_average_price') }, field: 'id', align: 'right'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ],
      depositColumns: [
        {
          name: 'created',
          get label() { return SM.t('lps_recorded') },
          field: 'created_at',
          align: 'left'
        },
        {name: 'lp', get label() { return SM.t('lps_lp') }, field: 'client_id', align: 'left'},
        {name: 'amount', get label() { return SM.t('lps_amount') }, field: 'amount', align: 'right'},
        {name: 'status', get label() { return SM.t('lps_status') }, field: 'status', align: 'left'},
        {name: 'notes', get label() { return SM.t('dialogs_notes') }, field: 'notes', align: 'left'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ]
    }
  },
  computed: {
    clientById() {
      return Object.fromEntries(this.clients.map(c => [c.id, c]))
    },
    visibleClients() {
      if (!this.lpMachineFilter) return this.clients
      return this.clients.filter(c => c.machine_id === this.lpMachineFilter)
    },
    selectedClient() {
      return this.clientById[this.selectedClientId] || null
    },
    visibleDeposits() {
      if (this.selectedClientId) {
        return this.deposits.filter(d => d.client_id === this.selectedClientId)
      }
      if (this.lpMachineFilter) {
        return this.deposits.filter(d => d.machine_id === this.lpMachineFilter)
      }
      return this.deposits
    },
    clientOptions() {
      return this.clients.map(c => ({
        value: c.id,
        label: SM.t('lps_lp_at', {
          name: this.clientName(c),
          machine: this.machineName(c.machine_id)
        })
      }))
    },
    settlePreviewSats() {
      const d = this.settleDialog.data
      const amount = Number(d.amount)
      const rate = Number(d.exchange_rate)
      if (!(amount > 0) || !(rate > 0)) return null
      return Math.floor((amount * 100000000) / rate)
    }
  },
  methods: {
    async loadClients() {
      this.clientsLoading = true
      try {
        this.clients = await SM.request('GET', '/clients', null, {limit: 1000})
        const balances = await Promise.all(
          this.clients.map(c =>
            SM.request('GET', `/clients/${c.id}/balance`).catch(() => null)
          )
        )
        this.clientBalances = Object.fromEntries(
          balances.filter(b => b).map(b => [b.client_id, b])
        )
        // What the LP set for themselves (wallet, mode, autoforward), if
        // they took the position over: shown read-only.
        const preferences = await Promise.all(
          this.clients.map(c =>
            SM.request('GET', `/clients/${c.id}/preferences`).catch(() => null)
          )
        )
        this.clientPreferences = Object.fromEntries(
          preferences.filter(p => p).map(p => [p.client_id, p])
        )
        this.clientsLoaded = true
        if (this.selectedClientId && !this.clientById[this.selectedClientId]) {
          this.selectedClientId = null
        }
      } catch (error) {
        SM.notifyError(error, SM.t('lps_could_not_load_the_lps'))
      } finally {
        this.clientsLoading = false
      }
    },
    async loadDeposits() {
      this.depositsLoading = true
      try {
        this.deposits = await SM.request('GET', '/deposits', null, {
          limit: 1000
        })
      } catch (error) {
        SM.notifyError(error, SM.t('lps_could_not_load_the_deposits'))
      } finally {
        this.depositsLoading = false
      }
    },
    async loadLpTab() {
      if (!this.machinesLoaded) await this.loadMachines()
      await Promise.all([
        this.loadClients(),
        this.loadDeposits(),
        this.loadInvites()
      ])
    },
    clientName(client) {
      if (!client) return '–'
      return client.username || SM.shortId(client.user_id)
    },
    preferencesOf(client) {
      return this.clientPreferences[client.id] || null
    },
    balanceOf(client) {
      return this.clientBalances[client.id] || null
    },
    currencyOf(client) {
      const machine = this.machineById[client.machine_id]
      return machine ? machine.currency : ''
    },
    // Fiat charged per BTC received; in-flight legs count in both sums.
    averagePrice(client) {
      const b = this.balanceOf(client)
      if (!b || !b.total_sats) return null
      return (Number(b.total_charged) * 100000000) / b.total_sats
    },
    // A q-input rule for a fiat amount in the client's machine currency.
    fiatRule(client, required) {
      const currency = client ? this.currencyOf(client) : 'USD'
      return value => {
        const problem = SM.fiatInputError(value, currency, required)
        return problem === null || problem
      }
    },
    selectClient(client) {
      this.selectedClientId =
        this.selectedClientId === client.id ? null : client.id
    },
    openClientDialog(client) {
      if (client) {
        this.clientDialog.id = client.id
        // Once the LP set their preferences, they are the LP's alone.
        const prefs = this.preferencesOf(client) || {}
        this.clientDialog.lpManaged = !!prefs.lp_managed
        this.clientDialog.data = {
          autoforward_enabled: !!prefs.autoforward_enabled,
          autoforward_address: prefs.autoforward_address || '',
          autoforward_threshold_sats: prefs.autoforward_threshold_sats,
          machine_id: client.machine_id,
          user_id: client.user_id,
          wallet_id: client.wallet_id,
          username: client.username || '',
          dca_mode: client.dca_mode,
          status: client.status,
          fixed_mode_daily_limit:
            client.fixed_mode_daily_limit_minor === null
              ? ''
              : String(
                  client.fixed_mode_daily_limit_minor /
                    10 ** SM.currencyDecimals(this.currencyOf(client))
                )
        }
      } else {
        this.clientDialog.id = null
        this.clientDialog.lpManaged = false
        this.clientDialog.data = {
          machine_id:
            this.lpMachineFilter ||
            (this.machines.length ? this.machines[0].id : null),
          user_id: '',
          wallet_id: '',
          username: '',
          dca_mode: 'flow',
          status: 'active',
          fixed_mode_daily_limit: ''
        }
      }
      this.clientDialog.show = true
    },
    async saveClient() {
      const d = this.clientDialog.data
      const limit = String(d.fixed_mode_daily_limit || '').trim()
      this.clientDialog.saving = true
      try {
        if (this.clientDialog.id) {
          const body = {username: d.username.trim(), status: d.status}
          if (!this.clientDialog.lpManaged) {
            body.wallet_id = d.wallet_id.trim()
            body.dca_mode = d.dca_mode
            if (d.dca_mode === 'fixed' && limit)
              body.fixed_mode_daily_limit = limit
          }
          await SM.request('PUT', `/clients/${this.clientDialog.id}`, body)
          SM.notifyDone(SM.t('lps_saved_the_lp'))
        } else {
          await SM.request('POST', '/clients', {
            machine_id: d.machine_id,
            user_id: d.user_id.trim(),
            wallet_id: d.wallet_id.trim(),
            username: d.username.trim() || null,
            dca_mode: d.dca_mode,
            fixed_mode_daily_limit:
              d.dca_mode === 'fixed' && limit ? limit : null
          })
          SM.notifyDone(
            SM.t('lps_registered', {name: d.username.trim() || SM.t('lps_the_lp')})
          )
        }
        this.clientDialog.show = false
        await this.loadClients()
      } catch (error) {
        SM.notifyError(error, SM.t('lps_could_not_save_the_lp'))
      } finally {
        this.clientDialog.saving = false
      }
    },
    deleteClient(client) {
      LNbits.utils
        .confirmDialog(
          SM.t('lps_remove_confirm', {
            name: this.clientName(client),
            machine: this.machineName(client.machine_id)
          })
        )
        .onOk(async () => {
          try {
            await SM.request('DELETE', `/clients/${client.id}`)
            SM.notifyDone(SM.t('lps_removed_the_lp'))
            await this.loadLpTab()
          } catch (error) {
            SM.notifyError(error, SM.t('lps_could_not_remove_the_lp'))
          }
        })
    },
    openDepositDialog(client, deposit) {
      this.depositDialog.client = client
      this.depositDialog.id = deposit ? deposit.id : null
      this.depositDialog.data = {
        amount: deposit ? String(deposit.amount) : '',
        notes: deposit ? deposit.notes || '' : ''
      }
      this.depositDialog.show = true
    },
    async saveDeposit() {
      const dialog = this.depositDialog
      const body = {
        amount: String(dialog.data.amount).trim(),
        notes: dialog.data.notes.trim() || null
      }
      dialog.saving = true
      try {
        if (dialog.id) {
          await SM.request('PUT', `/deposits/${dialog.id}`, body)
          SM.notifyDone(SM.t('lps_saved_the_deposit'))
        } else {
          await SM.request('POST', '/deposits', {
            ...body,
            client_id: dialog.client.id
          })
          SM.notifyDone(
            SM.t('lps_recorded_deposit')
          )
        }
        dialog.show = false
        await this.loadDeposits()
      } catch (error) {
        SM.notifyError(error, SM.t('lps_could_not_save_the_deposit'))
      } finally {
        dialog.saving = false
      }
    },
    setDepositStatus(deposit, status) {
      const client = this.clientById[deposit.client_id]
      const amount = SM.fiat(deposit.amount, deposit.currency)
      const message =
        status === 'confirmed'
          ? SM.t('lps_confirm_deposit', {amount, name: this.clientName(client)})
          : SM.t('lps_reject_deposit', {amount, name: this.clientName(client)})
      LNbits.utils.confirmDialog(message).onOk(async () => {
        try {
          await SM.request('PUT', `/deposits/${deposit.id}/status`, {status})
          SM.notifyDone(
            status === 'confirmed' ? SM.t('lps_deposit_confirmed') : SM.t('lps_deposit_rejected')
          )
          await Promise.all([this.loadDeposits(), this.loadClients()])
        } catch (error) {
          SM.notifyError(error, SM.t('lps_could_not_change_the_deposit'))
        }
      })
    },
    deleteDeposit(deposit) {
      LNbits.utils
        .confirmDialog(
          SM.t('lps_delete_deposit', {
            amount: SM.fiat(deposit.amount, deposit.currency)
          })
        )
        .onOk(async () => {
          try {
            await SM.request('DELETE', `/deposits/${deposit.id}`)
            SM.notifyDone(SM.t('lps_deleted_the_deposit'))
            await this.loadDeposits()
          } catch (error) {
            SM.notifyError(error, SM.t('lps_could_not_delete_the_deposit'))
          }
        })
    },
    openSettleDialog(client) {
      const balance = this.balanceOf(client)
      this.settleDialog.client = client
      this.settleDialog.data = {
        funding_wallet_id: this.machineById[client.machine_id]
          ? this.machineById[client.machine_id].wallet_id
          : null,
        exchange_rate: '',
        amount:
          balance && Number(balance.remaining_balance) > 0
            ? String(balance.remaining_balance)
            : '',
        notes: ''
      }
      this.settleDialog.show = true
    },
    async settleClient() {
      const dialog = this.settleDialog
      const d = dialog.data
      dialog.saving = true
      try {
        const leg = await SM.request(
          'POST',
          `/clients/${dialog.client.id}/settle`,
          {
            funding_wallet_id: d.funding_wallet_id,
            exchange_rate: String(d.exchange_rate).trim(),
            amount_fiat: String(d.amount).trim() || null,
            notes: d.notes.trim() || null
          }
        )
        if (leg.status === 'failed') {
          Quasar.Notify.create({
            type: 'negative',
            message: SM.t('lps_payout_failed', {
              reason: leg.error || SM.t('lps_no_reason')
            }),
            closeBtn: true,
            timeout: 8000
          })
        } else {
          SM.notifyDone(
            SM.t('lps_paid_to', {
              sats: SM.sats(leg.amount_sats),
              name: this.clientName(dialog.client)
            })
          )
        }
        dialog.show = false
        await Promise.all([this.loadClients(), this.refreshWalletBalances()])
      } catch (error) {
        SM.notifyError(error, SM.t('lps_could_not_settle_the_balance'))
      } finally {
        dialog.saving = false
      }
    }
  }
}
