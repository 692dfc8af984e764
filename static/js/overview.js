// Overview tab (the console's first): sales today / 7 days / the chosen
// period, commission, what the LPs are still owed, sats held in the machine
// wallets and why, what needs attention, and a daily sales chart per machine.
// Also the machines' health (online, last seen, cassettes) shown in the
// Machines tab.

let salesChart = null // a Chart.js instance: kept out of Vue's reactivity

window.SMOverview = {
  data() {
    const telemetryForm = {
      relays: '',
      offline_after_minutes: 10,
      low_cassette_bills: 20
    }
    return {
      overview: null,
      overviewLoading: false,
      overviewDays: 30,
      overviewDayOptions: [
        {value: 7, get label() { return SM.t('overview_7_days') }},
        {value: 30, get label() { return SM.t('overview_30_days') }},
        {value: 90, get label() { return SM.t('overview_90_days') }}
      ],
      machineHealth: {},
      telemetryForm,
      relayStatus: [],
      telemetrySaving: false,
      // The form as last read or saved: a reload keeps the operator's
      // unsaved edits (see applyTelemetrySettings).
      telemetryShown: JSON.stringify(telemetryForm),
      telemetryRequest: 0
    }
  },
  computed: {
    overviewWindows() {
      if (!this.overview) return []
      const sales = this.overview.sales
      return [
        {key: 'today', get label() { return SM.t('overview_today') }, data: sales.today},
        {key: '7d', get label() { return SM.t('overview_last_7_days') }, data: sales['7d']},
        {
          key: 'period',
          label: SM.t('overview_last_days', {days: this.overview.days}),
          data: sales.period
        }
      ]
    },
    overviewLiabilities() {
      return Object.entries((this.overview && this.overview.lp_liabilities) || {})
    },
    overviewHeld() {
      return (this.overview && this.overview.held_in_machine_wallets) || null
    },
    onlineCount() {
      return this.machines.filter(m => m.online).length
    }
  },
  methods: {
    async loadOverview() {
      this.overviewLoading = true
      try {
        this.overview = await SM.request('GET', '/overview', null, {
          days: this.overviewDays
        })
        this.$nextTick(this.drawSalesChart)
        this.loadTelemetrySettings()
      } catch (error) {
        SM.notifyError(error, SM.t('overview_could_not_load_the_overview'))
      } finally {
        this.overviewLoading = false
      }
    },
    async loadTelemetrySettings() {
      // Each overview (re)load reads the settings again, possibly while the
      // operator types or saves: a read answered after a newer read, or
      // after a save, is dropped.
      const request = ++this.telemetryRequest
      try {
        const data = await SM.request('GET', '/relays')
        if (request !== this.telemetryRequest) return
        this.applyTelemetrySettings(data, true)
      } catch (error) {
        SM.notifyError(error, SM.t('overview_could_not_load_the_relay'))
      }
    },
    // `keepEdits`: a reload shows the relays' state but leaves a form the
    // operator has changed (and not yet saved) as it is.
    applyTelemetrySettings(data, keepEdits = false) {
      const form = {
        relays: data.relays.join('\n'),
        offline_after_minutes: data.offline_after_minutes,
        low_cassette_bills: data.low_cassette_bills
      }
      const edited = JSON.stringify(this.telemetryForm) !== this.telemetryShown
      if (!keepEdits || !edited) {
        this.telemetryForm = form
        this.telemetryShown = JSON.stringify(form)
      }
      this.relayStatus = data.status || []
    },
    async saveTelemetrySettings() {
      this.telemetrySaving = true
      try {
        const relays = this.telemetryForm.relays
          .split(/\s+/)
          .map(url => url.trim())
          .filter(url => url)
        const data = await SM.request('PUT', '/relays', {
          relays,
          offline_after_minutes: this.telemetryForm.offline_after_minutes,
          low_cassette_bills: this.telemetryForm.low_cassette_bills
        })
        this.telemetryRequest++ // reads sent before this answer are stale
        this.applyTelemetrySettings(data)
        SM.notifyDone(SM.t('overview_saved_the_machine_report_settings'))
      } catch (error) {
        SM.notifyError(error, SM.t('overview_could_not_save_the_machine'))
      } finally {
        this.telemetrySaving = false
      }
    },
    async loadMachineHealth() {
      try {
        const rows = await SM.request('GET', '/health/machines')
        this.machineHealth = Object.fromEntries(
          rows.map(row => [row.machine_id, row])
        )
      } catch (error) {
        SM.notifyError(error, SM.t('overview_could_not_load_the_machines'))
      }
    },
    fiatList(fiat) {
      const entries = Object.entries(fiat || {})
      if (!entries.length) return '–'
      return entries.map(([cur, amount]) => SM.fiat(amount, cur)).join(' · ')
    },
    lastSeenText(machine) {
      if (!machine.last_seen_at) return SM.t('overview_never_reported')
      return SM.t('overview_seen', {when: SM.date(machine.last_seen_at)})
    },
    cassetteLow(machineId, cassette) {
      const health = this.machineHealth[machineId]
      if (!health) return false
      return (health.low_cassettes || []).some(
        low => low.position === cassette.position
      )
    },
    drawSalesChart() {
      if (salesChart) {
        salesChart.destroy()
        salesChart = null
      }
      const canvas = this.$refs.salesChart
      const series = this.overview && this.overview.series
      if (!canvas || !window.Chart || !series || !series.machines.length) return
      const primary = Quasar.colors.getPaletteColor('primary')
      const {r, g, b} = Quasar.colors.textToRgb(primary)
      const shades = [1, 0.55, 0.3, 0.8, 0.4, 0.2]
      salesChart = new Chart(canvas.getContext('2d'), {
        type: 'bar',
        data: {
          labels: series.days.map(day => SM.day(day)),
          datasets: series.machines.map((machine, i) => ({
            label: machine.name,
            data: machine.gross_sats,
            backgroundColor: `rgba(${r}, ${g}, ${b}, ${shades[i % shades.length]})`,
            borderRadius: 3,
            stack: 'sales'
          }))
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
            x: {stacked: true},
            y: {
              stacked: true,
              beginAtZero: true,
              ticks: {callback: v => LNbits.utils.formatSat(v)}
            }
          }
        }
      })
    }
  },
  watch: {
    overviewDays() {
      this.loadOverview()
    },
    // Whenever the machine list is (re)loaded, read their health too.
    machines() {
      this.loadMachineHealth()
    }
  }
}
