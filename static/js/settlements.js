// Settlements and Payments tabs: every sale, its payment legs, the
// operator's actions on it, the "needs attention" list and the leg audit.

const SETTLEMENT_PAGE = 100
const PAYMENT_PAGE = 200

window.SMSettlements = {
  data() {
    return {
      settlements: [],
      settlementsLoading: false,
      settlementsMore: false,
      settlementFilter: {status: null, machine_id: null},
      stuck: [],
      detail: {
        show: false,
        loading: false,
        settlement: null,
        legs: [],
        wait_reason: null
      },
      noteDialog: {show: false, saving: false, text: ''},
      partialDialog: {
        show: false,
        saving: false,
        mode: 'percent',
        value: '',
        notes: ''
      },
      actionBusy: false,
      settlementColumns: [
        {name: 'created', get label() { return SM.t('positions_date') }, field: 'created_at', align: 'left'},
        {name: 'machine', get label() { return SM.t('fixed_machine') }, field: 'machine_id', align: 'left'},
        {name: 'status', get label() { return SM.t('lps_status') }, field: 'status', align: 'left'},
        {name: 'gross', get label() { return SM.t('settlements_gross') }, field: 'gross_sats', align: 'right'},
        {name: 'net', get label() { return SM.t('settlements_net') }, field: 'net_sats', align: 'right'},
        {
          name: 'commission',
          get label() { return SM.t('dialogs_commission') },
          field: 'commission_sats',
          align: 'right'
        },
        {name: 'fiat', get label() { return SM.t('fixed_fiat') }, field: 'fiat_amount', align: 'right'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ],
      legColumns: [
        {name: 'type', get label() { return SM.t('positions_type') }, field: 'leg_type', align: 'left'},
        {
          name: 'destination',
          get label() { return SM.t('settlements_destination') },
          field: 'destination_wallet_id',
          align: 'left'
        },
        {name: 'sats', get label() { return SM.t('positions_sats_2') }, field: 'amount_sats', align: 'right'},
        {name: 'fiat', get label() { return SM.t('fixed_fiat') }, field: 'fiat_amount', align: 'right'},
        {name: 'status', get label() { return SM.t('lps_status') }, field: 'status', align: 'left'},
        {name: 'error', get label() { return SM.t('settlements_error_or_reason') }, field: 'error', align: 'left'}
      ],
      payments: [],
      paymentsLoading: false,
      paymentsMore: false,
      paymentFilter: {
        leg_type: null,
        status: null,
        client_id: null,
        settlement_id: ''
      },
      paymentColumns: [
        {name: 'created', get label() { return SM.t('positions_date') }, field: 'created_at', align: 'left'},
        {name: 'type', get label() { return SM.t('positions_type') }, field: 'leg_type', align: 'left'},
        {
          name: 'destination',
          get label() { return SM.t('settlements_destination') },
          field: 'destination_wallet_id',
          align: 'left'
        },
        {name: 'sats', get label() { return SM.t('positions_sats_2') }, field: 'amount_sats', align: 'right'},
        {name: 'fiat', get label() { return SM.t('fixed_fiat') }, field: 'fiat_amount', align: 'right'},
        {name: 'status', get label() { return SM.t('lps_status') }, field: 'status', align: 'left'},
        {
          name: 'settlement',
          get label() { return SM.t('dialogs_settlement') },
          field: 'settlement_id',
          align: 'left'
        },
        {name: 'error', get label() { return SM.t('settlements_error_or_reason') }, field: 'error', align: 'left'}
      ]
    }
  },
  computed: {
    settlementsExportUrl() {
      return `${SM.API}/export/settlements.csv${SM.query(this.settlementFilter)}`
    },
    paymentsExportUrl() {
      return `${SM.API}/export/payments.csv${SM.query(this.paymentQuery)}`
    },
    paymentQuery() {
      const f = this.paymentFilter
      return {
        leg_type: f.leg_type,
        status: f.status,
        client_id: f.client_id,
        settlement_id: (f.settlement_id || '').trim()
      }
    },
    detailCanRetry() {
      const s = this.detail.settlement
      return !!s && s.status === 'errored'
    },
    // A partial dispense is refused once any leg has been paid.
    detailCanPartial() {
      const s = this.detail.settlement
      if (!s || ['processed', 'partial', 'refunded'].includes(s.status))
        return false
      return !this.detail.legs.some(leg => leg.status === 'completed')
    },
    detailLegSum() {
      return this.detail.legs
        .filter(leg => leg.status !== 'voided')
        .reduce((sum, leg) => sum + leg.amount_sats, 0)
    }
  },
  methods: {
    async loadSettlements(more = false) {
      this.settlementsLoading = true
      try {
        if (!this.machinesLoaded) await this.loadMachines()
        if (!this.clientsLoaded) await this.loadClients()
        const rows = await SM.request('GET', '/settlements', null, {
          ...this.settlementFilter,
          limit: SETTLEMENT_PAGE,
          offset: more ? this.settlements.length : 0
        })
        this.settlements = more ? [...this.settlements, ...rows] : rows
        this.settlementsMore = rows.length === SETTLEMENT_PAGE
        this.stuck = await SM.request('GET', '/settlements/stuck', null, {
          limit: 50
        })
      } catch (error) {
        SM.notifyError(error, SM.t('settlements_could_not_load_the_settlements'))
      } finally {
        this.settlementsLoading = false
      }
    },
    async openSettlement(id) {
      this.detail.show = true
      this.detail.loading = true
      try {
        const data = await SM.request('GET', `/settlements/${id}`)
        this.detail.settlement = data.settlement
        this.detail.legs = data.legs
        this.detail.wait_reason = data.wait_reason
      } catch (error) {
        this.detail.show = false
        SM.notifyError(error, SM.t('settlements_could_not_open_the_settlement'))
      } finally {
        this.detail.loading = false
      }
    },
    async refreshDetail() {
      if (this.detail.settlement)
        await this.openSettlement(this.detail.settlement.id)
      await this.loadSettlements()
    },
    legDestination(leg) {
      const wallet = leg.destination_wallet_id
      if (leg.leg_type === 'super_fee') return SM.t('index_platform')
      if (leg.client_id && this.clientById[leg.client_id]) {
        return SM.t('settlements_lp', {
          name: this.clientName(this.clientById[leg.client_id])
        })
      }
      if (wallet && this.walletById[wallet]) return this.walletById[wallet].name
      if (leg.label) return leg.label
      if (!wallet) return SM.t('settlements_stays_in_the_machine_wallet')
      return SM.t('wallet_short', {id: SM.shortId(wallet)})
    },
    async retrySettlement() {
      this.actionBusy = true
      try {
        const s = await SM.request(
          'POST',
          `/settlements/${this.detail.settlement.id}/retry`
        )
        SM.notifyDone(SM.t('settlements_retried', {status: SM.word(s.status)}))
        await this.refreshDetail()
      } catch (error) {
        SM.notifyError(error, SM.t('settlements_could_not_retry_the_settlement'))
      } finally {
        this.actionBusy = false
      }
    },
    openNoteDialog() {
      this.noteDialog.text = ''
      this.noteDialog.show = true
    },
    async addNote() {
      this.noteDialog.saving = true
      try {
        await SM.request(
          'POST',
          `/settlements/${this.detail.settlement.id}/notes`,
          {
            note: this.noteDialog.text
          }
        )
        this.noteDialog.show = false
        SM.notifyDone(SM.t('settlements_note_added'))
        await this.openSettlement(this.detail.settlement.id)
      } catch (error) {
        SM.notifyError(error, SM.t('settlements_could_not_add_the_note'))
      } finally {
        this.noteDialog.saving = false
      }
    },
    openPartialDialog() {
      this.partialDialog = {
        show: true,
        saving: false,
        mode: 'percent',
        value: '',
        notes: ''
      }
    },
    partialRule(value) {
      if (this.partialDialog.mode === 'percent') {
        return SM.parsePercent(value) !== null || SM.t('settlements_percent_rule')
      }
      const gross = this.detail.settlement
        ? this.detail.settlement.gross_sats
        : 0
      const sats = Number(value)
      return (
        (/^\d+$/.test(String(value).trim()) && sats <= gross) ||
        SM.t('settlements_whole_sats', {max: LNbits.utils.formatSat(gross)})
      )
    },
    async partialDispense() {
      const dialog = this.partialDialog
      const body = {notes: dialog.notes.trim()}
      if (dialog.mode === 'percent') {
        body.dispensed_fraction = SM.unitsToFraction(
          SM.parsePercent(dialog.value)
        )
      } else {
        body.dispensed_sats = Number(String(dialog.value).trim())
      }
      dialog.saving = true
      try {
        const s = await SM.request(
          'POST',
          `/settlements/${this.detail.settlement.id}/partial-dispense`,
          body
        )
        dialog.show = false
        SM.notifyDone(SM.t('settlements_rescaled', {status: SM.word(s.status)}))
        await this.refreshDetail()
      } catch (error) {
        SM.notifyError(error, SM.t('settlements_could_not_apply_the_partial'))
      } finally {
        dialog.saving = false
      }
    },
    async loadPayments(more = false) {
      this.paymentsLoading = true
      try {
        if (!this.machinesLoaded) await this.loadMachines()
        if (!this.clientsLoaded) await this.loadClients()
        const rows = await SM.request('GET', '/payments', null, {
          ...this.paymentQuery,
          limit: PAYMENT_PAGE,
          offset: more ? this.payments.length : 0
        })
        this.payments = more ? [...this.payments, ...rows] : rows
        this.paymentsMore = rows.length === PAYMENT_PAGE
      } catch (error) {
        SM.notifyError(error, SM.t('settlements_could_not_load_the_payment'))
      } finally {
        this.paymentsLoading = false
      }
    },
    showSettlementPayments(settlementId) {
      this.paymentFilter = {
        leg_type: null,
        status: null,
        client_id: null,
        settlement_id: settlementId
      }
      this.detail.show = false
      this.tab = 'payments'
    }
  }
}
