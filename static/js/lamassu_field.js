// Lamassu in the field (issue 18): SSH settings of a Lamassu source (the
// extension's public key, the authorized_keys line, pinning the server's host
// key), and the cash-outs dialog: every cash-out the source holds for the
// machine's device with what became of it, ignoring one, importing a period
// of the machine's past after a preview.

window.SMLamassuField = {
  data() {
    return {
      // Outcomes are the API's English words, shown in the page's language.
      cashOutOutcomes: [null, 'landed', 'to_land', 'before_start', 'not_a_sale', 'ignored'].map(value => ({
        value,
        get label() { return value === null ? SM.t('lamassu_all_outcomes') : SM.word(value) }
      })),
      cashOutColumns: [
        {name: 'created', get label() { return SM.t('lamassu_made') }, field: 'created', align: 'left'},
        {name: 'fiat', get label() { return SM.t('lamassu_cash') }, field: 'fiat', align: 'right'},
        {name: 'crypto_atoms', get label() { return SM.t('lamassu_paid_sats') }, field: 'crypto_atoms', align: 'right'},
        {name: 'outcome', get label() { return SM.t('lamassu_outcome') }, field: 'outcome', align: 'left'},
        {name: 'reason', get label() { return SM.t('lamassu_why') }, field: 'reason', align: 'left'},
        {name: 'actions', label: '', field: 'id', align: 'right'}
      ],
      cashOutsDialog: {
        show: false,
        loading: false,
        machine: null,
        status: null,
        rows: [],
        error: null,
        since: '',
        until: '',
        outcome: null,
        importSince: '',
        importUntil: '',
        preview: null,
        importing: false
      }
    }
  },
  methods: {
    lamassuSshData(status) {
      // The SSH part of the Lamassu form, from the saved settings.
      return {
        use_ssh: !!(status && status.ssh_host),
        ssh_host: (status && status.ssh_host) || '',
        ssh_port: (status && status.ssh_port) || 22,
        ssh_user: (status && status.ssh_user) || ''
      }
    },
    lamassuSshBody(data) {
      // What PUT /lamassu takes for SSH; none of it without SSH.
      const body = {...data}
      const ssh = body.use_ssh
      delete body.use_ssh
      if (ssh) {
        body.ssh_port = Number(body.ssh_port) || 22
      } else {
        delete body.ssh_host
        delete body.ssh_port
        delete body.ssh_user
      }
      return body
    },
    async pinLamassuHostKey() {
      const d = this.lamassuDialog
      const fingerprint = d.result && d.result.host_key_fingerprint
      if (!fingerprint) return
      try {
        d.status = await SM.request('POST', `/machines/${d.machine.id}/lamassu/pin-host-key`, {fingerprint})
        SM.notifyDone(SM.t('lamassu_host_key_pinned'))
        d.result = null
      } catch (error) {
        SM.notifyError(error, SM.t('lamassu_could_not_pin'))
      }
    },
    copyText(text) {
      if (navigator.clipboard) navigator.clipboard.writeText(text)
      SM.notifyDone(SM.t('lamassu_copied'))
    },
    async openCashOuts(machine) {
      const c = this.cashOutsDialog
      c.machine = machine
      c.rows = []
      c.error = null
      c.preview = null
      c.outcome = null
      const weekAgo = new Date(Date.now() - 7 * 86400000)
      c.since = weekAgo.toISOString().slice(0, 10)
      c.until = ''
      c.importSince = ''
      c.importUntil = ''
      c.show = true
      try {
        c.status = await SM.request('GET', `/machines/${machine.id}/lamassu`)
      } catch (error) {
        c.status = null
      }
      await this.loadCashOuts()
    },
    cashOutParams() {
      const c = this.cashOutsDialog
      const params = {limit: 1000}
      if (c.since) params.since = new Date(c.since).toISOString()
      if (c.until) params.until = new Date(c.until).toISOString()
      if (c.outcome) params.outcome = c.outcome
      return params
    },
    async loadCashOuts() {
      const c = this.cashOutsDialog
      c.loading = true
      c.error = null
      try {
        c.rows = await SM.request('GET', `/machines/${c.machine.id}/lamassu/cash-outs`, null, this.cashOutParams())
      } catch (error) {
        c.rows = []
        c.error = (error.response && error.response.data && error.response.data.detail) || String(error)
      } finally {
        c.loading = false
      }
    },
    outcomeLabel(outcome) {
      return SM.word(outcome)
    },
    cashOutReason(row) {
      // The API's reason in the page's language when lamassu.py worded it
      // (an ignored cash-out's reason is the operator's own words).
      const text = row.reason || ''
      if (!text || row.outcome === 'ignored') return text
      const fixed = {
        'cash-in: the customer bought bitcoin with cash': 'lamassu_reason_cash_in',
        'not dispensed (the notes were never confirmed counted out)': 'lamassu_reason_not_dispensed',
        'made before the source started: lands only if you import its period': 'lamassu_reason_before_start',
        'a sale: lands at the next poll': 'lamassu_reason_to_land'
      }[text]
      if (fixed) return SM.t(fixed)
      let m = /^another coin \((.*)\)$/.exec(text)
      if (m) return SM.t('lamassu_reason_another_coin', {coin: m[1]})
      m = /^errored: ([\s\S]*)$/.exec(text)
      if (m) return SM.t('lamassu_reason_errored', {error: m[1]})
      m = /^not paid \(status (.*)\)$/.exec(text)
      if (m) return SM.t('lamassu_reason_not_paid', {status: m[1]})
      return text
    },
    lamassuTestError(result) {
      // What failed (the step, in the page's language): the API's words.
      const step = result.step
      const key = `satmachineadmin.lamassu_step.${step}`
      const known = step && (window.i18n.global.te(key) || window.i18n.global.te(key, 'en'))
      return known ? `${window.i18n.global.t(key)}: ${result.error}` : result.error
    },
    importDay(day) {
      // "2026-12-01" as a date in the page's language (no time zone shift).
      const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || '')
      if (!m) return day
      return new Intl.DateTimeFormat(SM.locale(), {dateStyle: 'medium'}).format(new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])))
    },
    outcomeColor(outcome) {
      return {landed: 'positive', to_land: 'primary', ignored: 'grey', before_start: 'orange', not_a_sale: 'grey-6'}[outcome] || 'grey'
    },
    async ignoreCashOut(row) {
      const c = this.cashOutsDialog
      const reason = window.prompt(SM.t('lamassu_why_ignored'))
      if (!reason || !reason.trim()) return
      try {
        await SM.request('POST', `/machines/${c.machine.id}/lamassu/cash-outs/${row.id}/ignore`, {reason: reason.trim()})
        SM.notifyDone(SM.t('lamassu_ignored_done'))
        await this.loadCashOuts()
      } catch (error) {
        SM.notifyError(error, SM.t('lamassu_could_not_ignore'))
      }
    },
    async unignoreCashOut(row) {
      const c = this.cashOutsDialog
      try {
        await SM.request('DELETE', `/machines/${c.machine.id}/lamassu/cash-outs/${row.id}/ignore`)
        SM.notifyDone(SM.t('lamassu_unignored'))
        await this.loadCashOuts()
      } catch (error) {
        SM.notifyError(error, SM.t('lamassu_could_not_unignore'))
      }
    },
    importBody(confirm) {
      const c = this.cashOutsDialog
      const body = {since: new Date(c.importSince).toISOString(), confirm}
      if (c.importUntil) body.until = new Date(c.importUntil).toISOString()
      return body
    },
    async previewImport() {
      const c = this.cashOutsDialog
      if (!c.importSince) return
      c.importing = true
      try {
        c.preview = await SM.request('POST', `/machines/${c.machine.id}/lamassu/import`, this.importBody(false))
      } catch (error) {
        c.preview = null
        SM.notifyError(error, SM.t('lamassu_could_not_preview'))
      } finally {
        c.importing = false
      }
    },
    async confirmImport() {
      const c = this.cashOutsDialog
      c.importing = true
      try {
        const r = await SM.request('POST', `/machines/${c.machine.id}/lamassu/import`, this.importBody(true))
        SM.notifyDone(SM.t('lamassu_imported', {count: SM.count(r.landed)}))
        c.preview = null
        await this.loadCashOuts()
        await this.loadMachines()
      } catch (error) {
        SM.notifyError(error, SM.t('lamassu_could_not_import'))
      } finally {
        c.importing = false
      }
    }
  }
}
