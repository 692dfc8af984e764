// Reconciliation (in the Settlements tab): for a machine or all machines and
// a period, what was sold, where the sats went, what stayed and why, and each
// machine wallet's LNbits balance against what the ledger says it should be.

window.SMReconciliation = {
  data() {
    return {
      reconciliation: null,
      reconciliationLoading: false,
      reconciliationFilter: {machine_id: null, since: '', until: ''}
    }
  },
  computed: {
    reconciliationQuery() {
      const f = this.reconciliationFilter
      return {
        machine_id: f.machine_id,
        since: (f.since || '').trim(),
        until: (f.until || '').trim()
      }
    },
    reconciliationExportUrl() {
      return `${SM.API}/export/reconciliation.csv${SM.query(this.reconciliationQuery)}`
    }
  },
  methods: {
    async loadReconciliation() {
      this.reconciliationLoading = true
      try {
        if (!this.machinesLoaded) await this.loadMachines()
        this.reconciliation = await SM.request(
          'GET',
          '/reconciliation',
          null,
          this.reconciliationQuery
        )
      } catch (error) {
        SM.notifyError(error, 'Could not reconcile')
      } finally {
        this.reconciliationLoading = false
      }
    },
    reconciliationFigures(m) {
      return [
        ['Sales', `${m.sales_count} · ${SM.sats(m.sales_gross_sats)}`],
        ['Sales fiat', SM.fiat(m.sales_fiat, m.currency)],
        ['Platform fee', SM.sats(m.platform_fee.sats)],
        ['Operator commission', SM.sats(m.operator_split.sats)],
        ['LP payouts (flow)', SM.sats(m.lp_flow.sats)],
        ['LP payouts (fixed)', SM.sats(m.lp_fixed.sats)],
        ['LP balance settlements', SM.sats(m.lp_settlement.sats)],
        [
          'Autoforwards',
          `${SM.sats(m.autoforward.sats)}` +
            (m.autoforward_failed ? ` (${m.autoforward_failed} failed)` : '')
        ],
        ['Refunds paid', SM.sats(m.refund_paid.sats)],
        ['Held for refunds', SM.sats(m.refund_held_sats)],
        ['Held in the wallet', SM.sats(m.held_sats)]
      ]
    },
    reconciliationWallet(m) {
      const w = m.wallet
      return [
        ['Sales paid in', SM.sats(w.sales_in_sats)],
        ['Top-ups and other incoming', SM.sats(Math.floor(w.other_incoming_msat / 1000))],
        ['Completed legs paid out', SM.sats(w.legs_out_sats)],
        ['Expected balance', SM.sats(w.expected_balance_sats)],
        ['LNbits balance', SM.sats(w.lnbits_balance_sats)]
      ]
    }
  }
}
