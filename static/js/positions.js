// "My positions" (the LP's own dashboard, across operators: totals, each
// position, the cumulative chart, payout history, autoforward, preferences)
// and "Platform" (the super user's platform fee).

let payoutChart = null // a Chart.js instance: kept out of Vue's reactivity

const CHART_RANGES = [
  {label: '7D', value: '7d', days: 7},
  {label: '30D', value: '30d', days: 30},
  {label: '90D', value: '90d', days: 90},
  {label: '1Y', value: '1y', days: 365},
  {get label() { return SM.t('positions_all') }, value: 'all', days: null}
]

function present(value) {
  return value !== null && value !== undefined
}

window.SMPositions = {
  data() {
    return {
      positions: [],
      positionsLoaded: false,
      positionsLoading: false,
      dashboard: null,
      lpPayments: [],
      lpPaymentsLoading: false,
      lpPaymentFilter: {client_id: null, leg_type: null, since: '', until: ''},
      lpDeposits: [],
      series: [],
      seriesLoading: false,
      chartRange: '30d',
      chartClientId: null,
      chartRanges: CHART_RANGES.map(r => ({label: r.label, value: r.value})),
      prefsDialog: {
        show: false,
        saving: false,
        position: null,
        maxLimit: null,
        data: {}
      },
      lpPaymentColumns: [
        {name: 'date', get label() { return SM.t('positions_date') }, field: 'completed_at', align: 'left'},
        {name: 'machine', get label() { return SM.t('fixed_machine') }, field: 'machine_id', align: 'left'},
        {name: 'type', get label() { return SM.t('positions_type') }, field: 'leg_type', align: 'left'},
        {name: 'sats', get label() { return SM.t('positions_sats_2') }, field: 'amount_sats', align: 'right'},
        {name: 'fiat', get label() { return SM.t('fixed_fiat') }, field: 'fiat_amount', align: 'right'},
        {name: 'price', get label() { return SM.t('positions_price_per_btc') }, field: 'price', align: 'right'}
      ],
      autoforwardColumns: [
        {name: 'date', get label() { return SM.t('positions_date') }, field: 'created_at', align: 'left'},
        {name: 'machine', get label() { return SM.t('positions_position') }, field: 'machine_name', align: 'left'},
        {name: 'address', get label() { return SM.t('positions_to') }, field: 'address', align: 'left'},
        {name: 'sats', get label() { return SM.t('positions_sats_2') }, field: 'amount_sats', align: 'right'},
        {name: 'status', get label() { return SM.t('lps_status') }, field: 'status', align: 'left'}
      ],
      superConfig: null,
      platformForm: {percent: '', wallet_id: null},
      platformSaving: false
    }
  },
  computed: {
    hasPositions() {
      return this.positions.length > 0
    },
    positionMachineNames() {
      return Object.fromEntries(
        this.positions.map(p => [p.machine_id, p.machine_name])
      )
    },
    positionCurrencies() {
      return Object.fromEntries(
        this.positions.map(p => [p.machine_id, p.currency])
      )
    },
    lpPositionOptions() {
      return this.positions.map(p => ({
        value: p.client_id,
        label: `${p.machine_name} (${p.currency})`
      }))
    },
    lpLegTypeOptions() {
      return ['dca', 'settlement', 'autoforward'].map(t => ({
        value: t,
        label: SM.LEG_TYPES[t]
      }))
    },
    // Each position with its dashboard figures (GET /lp/dashboard); before
    // the dashboard answers, the figures GET /lp/positions already gives.
    lpCards() {
      const dashboard = Object.fromEntries(
        ((this.dashboard && this.dashboard.positions) || []).map(d => [
          d.client_id,
          d
        ])
      )
      return this.positions.map(p => {
        const d = dashboard[p.client_id] || {}
        const pick = (key, fallback) => (present(d[key]) ? d[key] : fallback)
        const payouts = this.lpPayments.filter(
          x => x.client_id === p.client_id && x.leg_type !== 'autoforward'
        )
        const pending = this.positionDeposits(p)
          .filter(x => x.status === 'pending')
          .reduce((sum, x) => sum + Number(x.amount), 0)
        const autoforward = d.autoforward || {enabled: false, history: []}
        return {
          ...p,
          sats_stacked: pick('sats_stacked', p.sats_received),
          total_deposited: pick('total_deposited', p.total_deposits),
          pending_deposits: pick('pending_deposits', pending),
          balance_left: pick('balance_left', p.remaining_balance),
          purchases: pick('purchases_count', payouts.length),
          last_purchase: pick('last_purchase', payouts[0] || null),
          average_price: pick('average_price', p.average_price),
          current_price: pick('current_price', null),
          current_value: pick('current_value', null),
          gain: pick('gain', null),
          gain_pct: pick('gain_pct', null),
          lp_managed: pick('lp_managed', false),
          next_fixed_buy: pick('next_fixed_buy', null),
          autoforward
        }
      })
    },
    // Totals: sats across all positions; fiat per currency (positions may
    // be at machines in different currencies).
    lpTotals() {
      const cards = this.lpCards
      const t = (this.dashboard && this.dashboard.totals) || {}
      const byCurrency = {}
      cards.forEach(c => {
        const row = (byCurrency[c.currency] = byCurrency[c.currency] || {
          currency: c.currency,
          total_deposited: 0,
          pending_deposits: 0,
          balance_left: 0,
          current_value: null,
          gain: null
        })
        row.total_deposited += Number(c.total_deposited)
        row.pending_deposits += Number(c.pending_deposits)
        row.balance_left += Number(c.balance_left)
      })
      return {
        sats_stacked: present(t.sats_stacked)
          ? t.sats_stacked
          : cards.reduce((sum, c) => sum + Number(c.sats_stacked), 0),
        purchases: present(t.purchases_count)
          ? t.purchases_count
          : cards.reduce((sum, c) => sum + Number(c.purchases), 0),
        forwarded_sats: present(t.forwarded_sats) ? t.forwarded_sats : null,
        by_currency: t.by_currency || Object.values(byCurrency)
      }
    },
    lpPaymentFiltered() {
      const f = this.lpPaymentFilter
      return !!(f.client_id || f.leg_type || f.since || f.until)
    },
    // The dates picked are local days; the API takes UTC times, until
    // exclusive: from the first day's midnight to the midnight after the last.
    lpPaymentParams() {
      const f = this.lpPaymentFilter
      const utc = (day, plusDays) => {
        if (!day) return null
        const at = new Date(`${day}T00:00:00`)
        at.setDate(at.getDate() + plusDays)
        return at.toISOString().slice(0, 19)
      }
      return {
        client_id: f.client_id,
        leg_type: f.leg_type,
        since: utc(f.since, 0),
        until: utc(f.until, 1)
      }
    },
    // The API filters; this repeats the position and type filters so that
    // the table never shows rows of another filter while it reloads.
    visibleLpPayments() {
      const f = this.lpPaymentFilter
      return this.lpPayments.filter(
        p =>
          (!f.client_id || p.client_id === f.client_id) &&
          (!f.leg_type || p.leg_type === f.leg_type)
      )
    },
    lpPaymentsExportUrl() {
      return `${SM.API}/lp/export/payments.csv${SM.query(this.lpPaymentParams)}`
    },
    autoforwardRows() {
      return this.lpCards
        .flatMap(c =>
          (c.autoforward.history || []).map(h => ({
            ...h,
            machine_name: c.machine_name,
            address: h.address || c.autoforward.address
          }))
        )
        .sort(
          (a, b) =>
            new Date(b.completed_at || b.created_at || b.date) -
            new Date(a.completed_at || a.created_at || a.date)
        )
    },
    platformWalletOptions() {
      const options = [...this.ownWalletOptions]
      const current = this.platformForm.wallet_id
      if (current && !options.some(o => o.value === current)) {
        options.push({
          value: current,
          label: SM.t('wallet_short', {id: SM.shortId(current)})
        })
      }
      return options
    },
    platformPercentUnits() {
      return SM.parsePercent(this.platformForm.percent)
    },
    platformExample() {
      const units = this.platformPercentUnits
      if (units === null) return null
      const commission = 1000
      const platform = Math.round((commission * units) / SM.WHOLE)
      return {commission, platform, operator: commission - platform}
    }
  },
  watch: {
    chartRange() {
      this.loadSeries()
    },
    chartClientId() {
      this.loadSeries()
    },
    lpPaymentFilter: {
      deep: true,
      handler() {
        this.loadLpPayments()
      }
    }
  },
  methods: {
    // The figures of the LP's totals and of each position, as <dca-stat>
    // props (the template lists them).
    lpTotalStats() {
      const t = this.lpTotals
      const big = {class: 'col-6 col-sm-3', size: 'text-h6'}
      return [
        {
          ...big,
          label: SM.t('positions_sats_stacked'),
          value: SM.sats(t.sats_stacked),
          sub: t.forwarded_sats
            ? SM.sats(t.forwarded_sats) + SM.t('positions_forwarded')
            : '',
          valueTest: 'total-sats'
        },
        {
          ...big,
          label: SM.t('positions_purchases'),
          value: SM.count(t.purchases),
          valueTest: 'total-purchases'
        }
      ]
    },
    lpCurrencyStats(t) {
      const cls = 'col-6 col-sm-3'
      const fiat = value => SM.fiat(value, t.currency)
      return [
        {
          class: cls,
          label: SM.t('positions_total_deposited'),
          value: fiat(t.total_deposited),
          sub: Number(t.pending_deposits)
            ? fiat(t.pending_deposits) + SM.t('positions_pending')
            : '',
          valueTest: 'total-deposited'
        },
        {
          class: cls,
          label: SM.t('positions_balance_left'),
          value: fiat(t.balance_left),
          valueTest: 'total-balance'
        },
        {
          class: cls,
          label: SM.t('positions_current_value'),
          value: fiat(t.current_value),
          sub: SM.present(t.average_price)
            ? SM.t('positions_bought_at') +
              fiat(t.average_price) +
              SM.t('positions_btc_on_average')
            : '',
          valueTest: 'total-value'
        },
        {
          class: cls,
          label: SM.t('positions_gain'),
          value: SM.signedFiat(t.gain, t.currency),
          sub: SM.present(t.fiat_spent)
            ? SM.t('positions_on') + fiat(t.fiat_spent) + SM.t('positions_spent')
            : '',
          valueClass: SM.gainClass(t.gain),
          valueTest: 'total-gain'
        }
      ]
    },
    positionStats(p) {
      const fiat = value => SM.fiat(value, p.currency)
      const gainPct =
        p.gain_pct === null || p.gain_pct === undefined
          ? ''
          : ` (${Number(p.gain_pct) > 0 ? '+' : ''}${SM.decimalText(p.gain_pct)} %)`
      return [
        {
          class: 'col-6',
          size: 'text-h6',
          label: SM.t('positions_sats_stacked'),
          value: SM.sats(p.sats_stacked),
          sub:
            p.average_price === null
              ? SM.t('positions_no_payout_yet')
              : SM.t('positions_average') +
                fiat(p.average_price) +
                SM.t('dialogs_btc'),
          valueTest: 'position-sats'
        },
        {
          class: 'col-6',
          size: 'text-h6',
          label: SM.t('positions_balance_left'),
          value: fiat(p.balance_left),
          sub:
            SM.t('positions_of') +
            fiat(p.total_deposited) +
            SM.t('positions_deposited'),
          valueTest: 'position-remaining'
        },
        {
          class: 'col-6',
          label: SM.t('positions_current_value'),
          value: p.current_value === null ? '–' : fiat(p.current_value),
          sub: p.current_price
            ? SM.t('dialogs_at') + fiat(p.current_price) + SM.t('positions_btc_now')
            : SM.t('positions_no_rate_from_lnbits'),
          valueTest: 'position-value'
        },
        {
          class: 'col-6',
          label: SM.t('positions_gain'),
          value:
            p.gain === null ? '–' : SM.signedFiat(p.gain, p.currency) + gainPct,
          valueClass: SM.gainClass(p.gain),
          valueTest: 'position-gain'
        },
        {
          class: 'col-6',
          label: SM.t('positions_purchases'),
          value: SM.count(p.purchases),
          sub: p.last_purchase
            ? SM.t('positions_last') + SM.lastPurchase(p.last_purchase, p.currency)
            : SM.t('positions_none_yet'),
          valueTest: 'position-purchases'
        },
        {
          class: 'col-6',
          label: SM.t('positions_pending_deposits'),
          value: fiat(p.pending_deposits),
          sub: Number(p.pending_deposits)
            ? SM.t('positions_waiting_for_the_operator')
            : '',
          valueTest: 'position-pending'
        }
      ]
    },
    async loadPositions() {
      this.positionsLoading = true
      try {
        const [positions, deposits] = await Promise.all([
          SM.request('GET', '/lp/positions', null, {limit: 1000}),
          SM.request('GET', '/lp/deposits', null, {limit: 1000})
        ])
        this.positions = positions
        this.lpDeposits = deposits
        this.positionsLoaded = true
        if (positions.length) {
          await Promise.all([
            this.loadDashboard(),
            this.loadLpPayments(),
            this.loadSeries()
          ])
        }
      } catch (error) {
        SM.notifyError(error, SM.t('positions_could_not_load_your_positions'))
      } finally {
        this.positionsLoading = false
      }
    },
    async loadDashboard() {
      try {
        this.dashboard = await SM.request('GET', '/lp/dashboard')
      } catch (error) {
        this.dashboard = null
        SM.notifyError(error, SM.t('positions_could_not_load_your_dashboard'))
      }
    },
    async loadLpPayments() {
      this.lpPaymentsLoading = true
      try {
        this.lpPayments = await SM.request('GET', '/lp/payments', null, {
          ...this.lpPaymentParams,
          limit: 1000
        })
      } catch (error) {
        SM.notifyError(error, SM.t('positions_could_not_load_your_payouts'))
      } finally {
        this.lpPaymentsLoading = false
      }
    },
    async loadSeries() {
      this.seriesLoading = true
      try {
        const answer = await SM.request('GET', '/lp/payments/series', null, {
          client_id: this.chartClientId,
          range: this.chartRange
        })
        const points = Array.isArray(answer) ? answer : answer.points
        // Steps from the range's first day (from what came before) to its
        // last: flat across days without payouts, up on days with them.
        const since = answer.since ? String(answer.since).slice(0, 10) : null
        const until = answer.until ? String(answer.until).slice(0, 10) : null
        this.series = points.length
          ? SM.stepSeries(points, since, until, answer.start_sats)
          : []
      } catch (error) {
        this.series = []
        SM.notifyError(error, SM.t('positions_could_not_load_the_chart'))
      } finally {
        this.seriesLoading = false
        if (this.tab === 'positions') this.$nextTick(this.drawPayoutChart)
      }
    },
    positionDeposits(position) {
      return this.lpDeposits.filter(d => d.client_id === position.client_id)
    },
    drawPayoutChart() {
      if (payoutChart) {
        payoutChart.destroy()
        payoutChart = null
      }
      const canvas = this.$refs.payoutChart
      if (!canvas || !window.Chart || !this.series.length) return
      const primary = Quasar.colors.getPaletteColor('primary')
      const {r, g, b} = Quasar.colors.textToRgb(primary)
      const bars = `rgba(${r}, ${g}, ${b}, 0.35)`
      const series = this.series
      payoutChart = new Chart(canvas.getContext('2d'), {
        type: 'bar',
        data: {
          labels: series.map(p => SM.day(p.date)),
          datasets: [
            {
              type: 'line',
              label: SM.t('positions_sats_stacked'),
              data: series.map(p => p.cumulative_sats),
              borderColor: primary,
              backgroundColor: primary,
              yAxisID: 'total',
              // Steps: the total holds until the day payouts came in.
              stepped: 'after',
              pointRadius: series.map(p => (p.marked ? 3 : 0)),
              pointHoverRadius: series.map(p => (p.marked ? 5 : 0))
            },
            {
              label: SM.t('positions_sats_that_day'),
              data: series.map(p => p.sats),
              backgroundColor: bars,
              borderRadius: 4,
              maxBarThickness: 24,
              yAxisID: 'each'
            }
          ]
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          interaction: {mode: 'index', intersect: false},
          plugins: {
            tooltip: {
              callbacks: {
                label: ctx => `${ctx.dataset.label}: ${SM.sats(ctx.parsed.y)}`
              }
            }
          },
          scales: {
            total: {
              position: 'left',
              beginAtZero: true,
              ticks: {callback: v => LNbits.utils.formatSat(v)}
            },
            each: {
              position: 'right',
              beginAtZero: true,
              grid: {drawOnChartArea: false},
              ticks: {callback: v => LNbits.utils.formatSat(v)}
            }
          }
        }
      })
    },
    // The form starts from the position's preferences as the API has them
    // (GET /lp/positions/{id}: the daily limit and the operator's maximum).
    async openPrefsDialog(position) {
      const dialog = this.prefsDialog
      let prefs
      try {
        prefs = await SM.request('GET', `/lp/positions/${position.client_id}`)
      } catch (error) {
        SM.notifyError(error, SM.t('positions_could_not_load_your_preferences'))
        return
      }
      dialog.position = position
      dialog.maxLimit = prefs.max_fixed_mode_daily_limit
      dialog.data = {
        wallet_id: prefs.wallet_id,
        dca_mode: prefs.dca_mode,
        fixed_mode_daily_limit: present(prefs.fixed_mode_daily_limit)
          ? String(prefs.fixed_mode_daily_limit)
          : '',
        autoforward_enabled: !!prefs.autoforward_enabled,
        autoforward_address: prefs.autoforward_address || '',
        autoforward_threshold_sats: present(prefs.autoforward_threshold_sats)
          ? String(prefs.autoforward_threshold_sats)
          : ''
      }
      dialog.show = true
    },
    async savePrefs() {
      const dialog = this.prefsDialog
      const d = dialog.data
      const body = {
        wallet_id: d.wallet_id,
        dca_mode: d.dca_mode,
        fixed_mode_daily_limit:
          d.dca_mode === 'fixed' ? String(d.fixed_mode_daily_limit).trim() : null,
        autoforward_enabled: !!d.autoforward_enabled
      }
      if (d.autoforward_enabled) {
        body.autoforward_address = d.autoforward_address.trim()
        body.autoforward_threshold_sats = Number(d.autoforward_threshold_sats)
      }
      dialog.saving = true
      try {
        await SM.request(
          'PUT',
          `/lp/positions/${dialog.position.client_id}`,
          body
        )
        SM.notifyDone(SM.t('positions_saved_your_preferences'))
        dialog.show = false
        await this.loadPositions()
      } catch (error) {
        SM.notifyError(error, SM.t('positions_could_not_save_your_preferences'))
      } finally {
        dialog.saving = false
      }
    },
    async loadSuperConfig() {
      try {
        this.superConfig = await SM.request('GET', '/super-config')
        this.platformForm = {
          percent: SM.fractionToPercentText(this.superConfig.super_fee_pct),
          wallet_id: this.superConfig.super_fee_wallet_id
        }
      } catch (error) {
        SM.notifyError(error, SM.t('positions_could_not_load_the_platform'))
      }
    },
    platformPercentRule(value) {
      return (
        SM.parsePercent(value) !== null ||
        SM.t('input_percent')
      )
    },
    async saveSuperConfig() {
      const units = this.platformPercentUnits
      if (units === null) return
      this.platformSaving = true
      try {
        await SM.request('PUT', '/super-config', {
          super_fee_pct: SM.unitsToFraction(units),
          super_fee_wallet_id: this.platformForm.wallet_id || null
        })
        SM.notifyDone(SM.t('positions_saved_the_platform_fee'))
        await this.loadSuperConfig()
      } catch (error) {
        SM.notifyError(error, SM.t('positions_could_not_save_the_platform'))
      } finally {
        this.platformSaving = false
      }
    }
  }
}
