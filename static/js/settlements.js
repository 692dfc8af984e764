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
        {name: 'created', label: 'Date', field: 'created_at', align: 'left'},
        {name: 'machine', label: 'Machine', field: 'machine_id', align: 'left'},
        {name: 'status', label: 'Status', field: 'status', align: 'left'},
        {name: 'gross', label: 'Gross', field: 'gross_sats', align: 'right'},
        {name: 'net', label: 'Net', field: 'net_sats', align: 'right'},
        {
          name: 'commission',
          label: 'Commission',
          field: 'commission_sats',
          align: 'right'
        },
        {name: 'fiat', label: 'Fiat', field: 'fiat_amount', align: 'right'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ],
      legColumns: [
        {name: 'type', label: 'Type', field: 'leg_type', align: 'left'},
        {
          name: 'destination',
          label: 'Destination',
          field: 'destination_wallet_id',
          align: 'left'
        },
        {name: 'sats', label: 'Sats', field: 'amount_sats', align: 'right'},
        {name: 'fiat', label: 'Fiat', field: 'fiat_amount', align: 'right'},
        {name: 'status', label: 'Status', field: 'status', align: 'left'},
        {name: 'error', label: 'Error or reason', field: 'error', align: 'left'}
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
        {name: 'created', label: 'Date', field: 'created_at', align: 'left'},
        {name: 'type', label: 'Type', field: 'leg_type', align: 'left'},
        {
          name: 'destination',
          label: 'Destination',
          field: 'destination_wallet_id',
          align: 'left'
        },
        {name: 'sats', label: 'Sats', field: 'amount_sats', align: 'right'},
        {name: 'fiat', label: 'Fiat', field: 'fiat_amount', align: 'right'},
        {name: 'status', label: 'Status', field: 'status', align: 'left'},
        {
          name: 'settlement',
          label: 'Settlement',
          field: 'settlement_id',
          align: 'left'
        },
        {name: 'error', label: 'Error or reason', field: 'error', align: 'left'}
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
        SM.notifyError(error, 'Could not load the settlements')
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
        SM.notifyError(error, 'Could not open the settlement')
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
      if (leg.leg_type === 'super_fee') return 'Platform'
      if (leg.client_id && this.clientById[leg.client_id]) {
        return `LP ${this.clientName(this.clientById[leg.client_id])}`
      }
      if (wallet && this.walletById[wallet]) return this.walletById[wallet].name
      if (leg.label) return leg.label
      if (!wallet) return 'stays in the machine wallet'
      return `Wallet ${SM.shortId(wallet)}`
    },
    async retrySettlement() {
      this.actionBusy = true
      try {
        const s = await SM.request(
          'POST',
          `/settlements/${this.detail.settlement.id}/retry`
        )
        SM.notifyDone(`Retried: the settlement is ${s.status}`)
        await this.refreshDetail()
      } catch (error) {
        SM.notifyError(error, 'Could not retry the settlement')
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
        SM.notifyDone('Note added')
        await this.openSettlement(this.detail.settlement.id)
      } catch (error) {
        SM.notifyError(error, 'Could not add the note')
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
        return SM.parsePercent(value) !== null || 'A percentage from 0 to 100'
      }
      const gross = this.detail.settlement
        ? this.detail.settlement.gross_sats
        : 0
      const sats = Number(value)
      return (
        (/^\d+$/.test(String(value).trim()) && sats <= gross) ||
        `Whole sats from 0 to ${LNbits.utils.formatSat(gross)}`
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
        SM.notifyDone(`Rescaled: the settlement is ${s.status}`)
        await this.refreshDetail()
      } catch (error) {
        SM.notifyError(error, 'Could not apply the partial dispense')
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
        SM.notifyError(error, 'Could not load the payment legs')
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
