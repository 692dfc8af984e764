// Sale sources: a Lamassu machine's connection (test, poll now, status), a
// manual sale, and what each machine owes against what its wallet holds.

window.SMSources = {
  data() {
    return {
      funding: {},
      sourceOptions: [
        {value: 'bitspire', get label() { return SM.t('sources_bitspire') }},
        {value: 'lamassu', get label() { return SM.t('sources_lamassu') }},
        {value: 'manual', get label() { return SM.t('sources_manual') }}
      ],
      sslModes: ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'],
      lamassuDialog: {
        show: false,
        saving: false,
        testing: false,
        polling: false,
        machine: null,
        status: null,
        result: null,
        data: {}
      },
      manualDialog: {
        show: false,
        saving: false,
        machine: null,
        data: {}
      }
    }
  },
  watch: {
    machines() {
      this.loadFunding()
    }
  },
  methods: {
    async loadFunding() {
      try {
        const rows = await SM.request('GET', '/funding')
        this.funding = Object.fromEntries(rows.map(r => [r.machine_id, r]))
      } catch (error) {
        this.funding = {}
      }
    },
    owes(machineId) {
      const row = this.funding[machineId]
      return row ? row.owes_sats : 0
    },
    underfunded(machineId) {
      const row = this.funding[machineId]
      return !!row && row.owes_sats > row.holds_sats
    },
    async openLamassuDialog(machine) {
      const d = this.lamassuDialog
      d.machine = machine
      d.result = null
      d.status = null
      d.data = {
        host: '',
        port: 5432,
        database: 'lamassu',
        user: '',
        password: '',
        sslmode: 'prefer',
        device_id: '',
        poll_seconds: 60,
        ...this.lamassuSshData(null)
      }
      const row = this.funding[machine.id]
      if (!row || !row.lamassu_configured) {
        d.show = true // nothing saved yet: no settings to read
        return
      }
      try {
        const s = await SM.request('GET', `/machines/${machine.id}/lamassu`)
        d.status = s
        Object.assign(d.data, {
          host: s.host,
          port: s.port,
          database: s.database,
          user: s.user,
          sslmode: s.sslmode,
          device_id: s.device_id,
          poll_seconds: s.poll_seconds,
          ...this.lamassuSshData(s)
        })
      } catch (error) {
        if (!error.response || error.response.status !== 404) {
          SM.notifyError(error, SM.t('lamassu_could_not_load'))
        }
      }
      d.show = true
    },
    async saveLamassu() {
      const d = this.lamassuDialog
      const body = this.lamassuSshBody({...d.data, port: Number(d.data.port), poll_seconds: Number(d.data.poll_seconds)})
      // An empty password field keeps the stored password.
      if (!body.password) delete body.password
      d.saving = true
      try {
        d.status = await SM.request('PUT', `/machines/${d.machine.id}/lamassu`, body)
        d.data.password = ''
        SM.notifyDone(SM.t('lamassu_saved'))
        await this.loadFunding()
      } catch (error) {
        SM.notifyError(error, SM.t('lamassu_could_not_save'))
      } finally {
        d.saving = false
      }
    },
    async testLamassu() {
      const d = this.lamassuDialog
      d.testing = true
      try {
        d.result = await SM.request('POST', `/machines/${d.machine.id}/lamassu/test`)
      } catch (error) {
        SM.notifyError(error, SM.t('lamassu_could_not_test'))
      } finally {
        d.testing = false
      }
    },
    async pollLamassu() {
      const d = this.lamassuDialog
      d.polling = true
      try {
        const r = await SM.request('POST', `/machines/${d.machine.id}/lamassu/poll`)
        if (r.error) SM.notifyError({message: r.error}, SM.t('lamassu_poll_failed'))
        else SM.notifyDone(SM.t('lamassu_landed', {count: SM.count(r.landed)}))
        d.status = await SM.request('GET', `/machines/${d.machine.id}/lamassu`)
        await this.loadMachines()
      } catch (error) {
        SM.notifyError(error, SM.t('lamassu_could_not_poll'))
      } finally {
        d.polling = false
      }
    },
    openManualDialog(machine) {
      this.manualDialog.machine = machine
      this.manualDialog.data = {
        reference: '',
        fiat_amount: '',
        exchange_rate: '',
        commission_kind: 'sats',
        commission: '',
        occurred_at: new Date().toISOString().slice(0, 16),
        note: ''
      }
      this.manualDialog.show = true
    },
    async saveManualSale() {
      const m = this.manualDialog
      const d = m.data
      const body = {
        machine_id: m.machine.id,
        reference: d.reference.trim(),
        fiat_amount: String(d.fiat_amount).trim(),
        exchange_rate: String(d.exchange_rate).trim(),
        occurred_at: new Date(d.occurred_at).toISOString(),
        note: d.note || null
      }
      if (d.commission_kind === 'sats') {
        body.commission_sats = Number(d.commission)
      } else {
        const units = SM.parsePercent(String(d.commission))
        body.fee_pct = units === null ? String(d.commission) : SM.unitsToFraction(units)
      }
      m.saving = true
      try {
        const s = await SM.request('POST', '/settlements/manual', body)
        SM.notifyDone(
          SM.t('sources_recorded', {
            reference: body.reference,
            sats: SM.sats(s.gross_sats)
          })
        )
        m.show = false
        await this.loadMachines()
      } catch (error) {
        SM.notifyError(error, SM.t('sources_could_not_record'))
      } finally {
        m.saving = false
      }
    }
  }
}
