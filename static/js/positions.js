// "My positions" (the LP's own view, across operators) and "Platform" (the
// super user's platform fee).

let payoutChart = null // a Chart.js instance: kept out of Vue's reactivity

window.SMPositions = {
  data() {
    return {
      positions: [],
      positionsLoaded: false,
      positionsLoading: false,
      lpPayments: [],
      lpDeposits: [],
      lpPaymentColumns: [
        {name: 'date', label: 'Date', field: 'completed_at', align: 'left'},
        {name: 'machine', label: 'Machine', field: 'machine_id', align: 'left'},
        {name: 'type', label: 'Type', field: 'leg_type', align: 'left'},
        {name: 'sats', label: 'Sats', field: 'amount_sats', align: 'right'},
        {name: 'fiat', label: 'Fiat', field: 'fiat_amount', align: 'right'},
        {name: 'price', label: 'Price per BTC', field: 'price', align: 'right'}
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
    // Completed payouts, oldest first, with the running total of sats.
    payoutSeries() {
      let total = 0
      return [...this.lpPayments]
        .map(p => ({...p, at: p.completed_at || p.created_at}))
        .sort((a, b) => new Date(a.at) - new Date(b.at))
        .map(p => {
          total += p.amount_sats
          return {at: p.at, sats: p.amount_sats, total}
        })
    },
    platformWalletOptions() {
      const options = [...this.ownWalletOptions]
      const current = this.platformForm.wallet_id
      if (current && !options.some(o => o.value === current)) {
        options.push({value: current, label: `Wallet ${SM.shortId(current)}`})
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
  methods: {
    async loadPositions() {
      this.positionsLoading = true
      try {
        const [positions, payments, deposits] = await Promise.all([
          SM.request('GET', '/lp/positions', null, {limit: 1000}),
          SM.request('GET', '/lp/payments', null, {limit: 1000}),
          SM.request('GET', '/lp/deposits', null, {limit: 1000})
        ])
        this.positions = positions
        this.lpPayments = payments
        this.lpDeposits = deposits
        this.positionsLoaded = true
        if (this.tab === 'positions') this.$nextTick(this.drawPayoutChart)
      } catch (error) {
        SM.notifyError(error, 'Could not load your positions')
      } finally {
        this.positionsLoading = false
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
      if (!canvas || !window.Chart || !this.payoutSeries.length) return
      const primary = Quasar.colors.getPaletteColor('primary')
      const {r, g, b} = Quasar.colors.textToRgb(primary)
      const bars = `rgba(${r}, ${g}, ${b}, 0.35)`
      const series = this.payoutSeries
      payoutChart = new Chart(canvas.getContext('2d'), {
        type: 'bar',
        data: {
          labels: series.map(p => SM.date(p.at)),
          datasets: [
            {
              type: 'line',
              label: 'Sats received in total',
              data: series.map(p => p.total),
              borderColor: primary,
              backgroundColor: primary,
              yAxisID: 'total',
              pointRadius: 3
            },
            {
              label: 'Sats per payout',
              data: series.map(p => p.sats),
              backgroundColor: bars,
              borderRadius: 4,
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
    async loadSuperConfig() {
      try {
        this.superConfig = await SM.request('GET', '/super-config')
        this.platformForm = {
          percent: SM.fractionToPercentText(this.superConfig.super_fee_pct),
          wallet_id: this.superConfig.super_fee_wallet_id
        }
      } catch (error) {
        SM.notifyError(error, 'Could not load the platform fee')
      }
    },
    platformPercentRule(value) {
      return (
        SM.parsePercent(value) !== null ||
        'A percentage from 0 to 100, at most 4 decimals'
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
        SM.notifyDone('Saved the platform fee')
        await this.loadSuperConfig()
      } catch (error) {
        SM.notifyError(error, 'Could not save the platform fee')
      } finally {
        this.platformSaving = false
      }
    }
  }
}
