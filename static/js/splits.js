// Splits tab: how the operator's share of each commission is split across
// wallets, by default and per machine. Saves only at exactly 100 %.

window.SMSplits = {
  data() {
    return {
      splitScope: 'default',
      splitLegs: [],
      splitSaved: [],
      defaultSplits: [],
      splitsLoading: false,
      splitsSaving: false,
      // A machine without an override uses the default rules.
      splitUsesDefault: false
    }
  },
  computed: {
    splitScopeOptions() {
      return [
        {
          value: 'default',
          get label() { return SM.t('splits_default_every_machine_without_an') }
        },
        ...this.machines.map(m => ({
          value: m.id,
          label: SM.t('splits_override_for', {name: m.name})
        }))
      ]
    },
    splitUnits() {
      return this.splitLegs.map(leg => SM.parsePercent(leg.percent))
    },
    splitTotalUnits() {
      return this.splitUnits.reduce((sum, units) => sum + (units || 0), 0)
    },
    splitTotalText() {
      return `${SM.unitsToPercentText(this.splitTotalUnits)} %`
    },
    splitProblem() {
      if (!this.splitLegs.length) return SM.t('splits_add_at_least_one_wallet')
      if (this.splitLegs.some(leg => !leg.wallet_id))
        return SM.t('splits_pick_a_wallet_for_every')
      const wallets = this.splitLegs.map(leg => leg.wallet_id)
      if (new Set(wallets).size !== wallets.length) {
        return SM.t('splits_each_wallet_may_appear_only')
      }
      if (this.splitUnits.some(units => units === null || units === 0)) {
        return SM.t('splits_every_share_must_be_a')
      }
      const diff = SM.WHOLE - this.splitTotalUnits
      if (diff > 0) return SM.t('splits_left', {percent: SM.unitsToPercentText(diff)})
      if (diff < 0) return SM.t('splits_too_much', {percent: SM.unitsToPercentText(-diff)})
      return null
    },
    splitDirty() {
      return JSON.stringify(this.splitLegs) !== JSON.stringify(this.splitSaved)
    },
    splitWalletOptions() {
      // The operator's wallets, plus any other wallet id already in a rule.
      const known = new Set(this.ownWalletOptions.map(o => o.value))
      const extra = this.splitLegs
        .filter(leg => leg.wallet_id && !known.has(leg.wallet_id))
        .map(leg => ({
          value: leg.wallet_id,
          label: SM.t('wallet_short', {id: SM.shortId(leg.wallet_id)})
        }))
      return [...this.ownWalletOptions, ...extra]
    },
    splitDefaultSummary() {
      const name = this.machineName(this.splitScope)
      if (!this.defaultSplits.length) {
        return SM.t('splits_no_override_no_default', {name})
      }
      const legs = this.defaultSplits
        .map(
          s =>
            `${s.label || this.walletLabel(s.wallet_id)} ${SM.percent(s.pct)}`
        )
        .join(', ')
      return SM.t('splits_uses_default', {name, legs})
    },
    operatorSharePercent() {
      if (!this.superConfig) return null
      return SM.unitsToPercentText(
        SM.WHOLE - Math.round(Number(this.superConfig.super_fee_pct) * SM.WHOLE)
      )
    }
  },
  methods: {
    toEditorLegs(rows) {
      return rows.map(row => ({
        wallet_id: row.wallet_id,
        label: row.label || '',
        percent: SM.fractionToPercentText(row.pct)
      }))
    },
    async loadSplits() {
      this.splitsLoading = true
      try {
        if (!this.machinesLoaded) await this.loadMachines()
        if (
          this.splitScope !== 'default' &&
          !this.machineById[this.splitScope]
        ) {
          this.splitScope = 'default'
        }
        this.defaultSplits = await SM.request('GET', '/commission-splits')
        let rows = this.defaultSplits
        this.splitUsesDefault = false
        if (this.splitScope !== 'default') {
          rows = await SM.request('GET', '/commission-splits', null, {
            machine_id: this.splitScope
          })
          this.splitUsesDefault = rows.length === 0
        }
        this.splitLegs = this.toEditorLegs(rows)
        this.splitSaved = this.toEditorLegs(rows)
      } catch (error) {
        SM.notifyError(error, SM.t('splits_could_not_load_the_commission'))
      } finally {
        this.splitsLoading = false
      }
    },
    addSplitLeg() {
      const used = new Set(this.splitLegs.map(leg => leg.wallet_id))
      const free = this.ownWalletOptions.find(o => !used.has(o.value))
      const left = SM.WHOLE - this.splitTotalUnits
      this.splitLegs.push({
        wallet_id: free ? free.value : null,
        label: '',
        percent: left > 0 ? SM.unitsToPercentText(left) : ''
      })
    },
    removeSplitLeg(index) {
      this.splitLegs.splice(index, 1)
    },
    startOverride() {
      this.splitLegs = this.toEditorLegs(this.defaultSplits)
      if (!this.splitLegs.length) this.addSplitLeg()
      this.splitUsesDefault = false
    },
    percentRule(value) {
      const units = SM.parsePercent(value)
      return (
        (units !== null && units > 0) ||
        SM.t('splits_percent_rule')
      )
    },
    async saveSplits() {
      if (this.splitProblem) return
      const body = {
        machine_id: this.splitScope === 'default' ? null : this.splitScope,
        legs: this.splitLegs.map(leg => ({
          wallet_id: leg.wallet_id,
          label: leg.label.trim(),
          pct: SM.unitsToFraction(SM.parsePercent(leg.percent))
        }))
      }
      this.splitsSaving = true
      try {
        await SM.request('PUT', '/commission-splits', body)
        SM.notifyDone(SM.t('splits_saved_the_commission_split'))
        await this.loadSplits()
      } catch (error) {
        SM.notifyError(error, SM.t('splits_could_not_save_the_commission'))
      } finally {
        this.splitsSaving = false
      }
    },
    clearSplits() {
      const message =
        this.splitScope === 'default'
          ? SM.t('splits_clear_the_default_split_machines')
          : SM.t('splits_remove_override', {
              name: this.machineName(this.splitScope)
            })
      LNbits.utils.confirmDialog(message).onOk(async () => {
        try {
          await SM.request('DELETE', '/commission-splits', null, {
            machine_id: this.splitScope === 'default' ? null : this.splitScope
          })
          SM.notifyDone(SM.t('splits_cleared'))
          await this.loadSplits()
        } catch (error) {
          SM.notifyError(error, SM.t('splits_could_not_clear_the_commission'))
        }
      })
    }
  },
  watch: {
    splitScope() {
      this.loadSplits()
    }
  }
}
