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
        SM.notifyError(error, SM.t('reconciliation_could_not_reconcile'))
      } finally {
        this.reconciliationLoading = false
      }
    },
    reconciliationFigures(m) {
      return [
        [SM.t('rec_sales'), `${m.sales_count} · ${SM.sats(m.sales_gross_sats)}`],
        [SM.t('rec_sales_fiat'), SM.fiat(m.sales_fiat, m.currency)],
        [SM.t('rec_platform_fee'), SM.sats(m.platform_fee.sats)],
        [SM.t('rec_operator_commission'), SM.sats(m.operator_split.sats)],
        [SM.t('rec_lp_flow'), SM.sats(m.lp_flow.sats)],
        [SM.t('rec_lp_fixed'), SM.sats(m.lp_fixed.sats)],
        [SM.t('rec_lp_settlements'), SM.sats(m.lp_settlement.sats)],
        [
          SM.t('rec_autoforwards'),
          `${SM.sats(m.autoforward.sats)}` +
            (m.autoforward_failed ? SM.t('rec_failed', {count: m.autoforward_failed}) : '')
        ],
        [SM.t('rec_refunds_paid'), SM.sats(m.refund_paid.sats)],
        [SM.t('rec_held_refunds'), SM.sats(m.refund_held_sats)],
        [SM.t('rec_held_wallet'), SM.sats(m.held_sats)]
      ]
    },
    reconciliationWallet(m) {
      const w = m.wallet
      return [
        [SM.t('rec_sales_in'), SM.sats(w.sales_in_sats)],
        [SM.t('rec_other_incoming'), SM.sats(Math.floor(w.other_incoming_msat / 1000))],
        [SM.t('rec_legs_out'), SM.sats(w.legs_out_sats)],
        [SM.t('rec_expected'), SM.sats(w.expected_balance_sats)],
        [SM.t('rec_lnbits_balance'), SM.sats(w.lnbits_balance_sats)]
      ]
    }
  }
}
