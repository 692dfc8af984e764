// Fixed mode & alerts tab: the fixed-mode schedule (an operator default and
// per-machine overrides), each machine's next-slot preview with a "run now",
// and the operator's notifications (webhook, thresholds, the log).

window.SMFixed = {
  data() {
    return {
      fixedScope: 'default',
      fixedForm: {
        times: '09:00, 15:00',
        timezone: 'America/Guatemala',
        max_daily_limit: '2000',
        funding_wallet_id: null
      },
      fixedExists: false,
      fixedSaving: false,
      fixedPreviews: [],
      fixedPreviewLoading: false,
      fixedRunning: null,
      notifyForm: {
        webhook_url: '',
        lnbits_channels: true,
        stuck_after_minutes: 30,
        offline_after_minutes: 15
      },
      notifyHasSecret: false,
      notifySecretShown: null,
      notifySaving: false,
      notifyLog: [],
      notifyLogColumns: [
        {name: 'created_at', get label() { return SM.t('fixed_when') }, field: 'created_at', align: 'left'},
        {name: 'kind', label: '', field: 'kind', align: 'left'},
        {name: 'title', get label() { return SM.t('fixed_problem') }, field: 'title', align: 'left'},
        {name: 'channels', get label() { return SM.t('fixed_sent_by') }, field: 'channels', align: 'left'},
        {
          name: 'webhook_status',
          get label() { return SM.t('fixed_webhook') },
          field: 'webhook_status',
          align: 'left'
        }
      ]
    }
  },
  computed: {
    fixedScopeOptions() {
      return [
        {value: 'default', get label() { return SM.t('fixed_default_every_machine_without_its') }},
        ...this.machines.map(m => ({
          value: m.id,
          label: SM.t('fixed_schedule_of', {name: m.name})
        }))
      ]
    }
  },
  methods: {
    fixedMachineParam() {
      return this.fixedScope === 'default' ? {} : {machine_id: this.fixedScope}
    },
    async loadFixedTab() {
      await Promise.all([
        this.loadFixedSchedule(),
        this.loadFixedPreviews(),
        this.loadNotifications()
      ])
    },
    async loadFixedSchedule() {
      try {
        const schedule = await SM.request(
          'GET',
          '/fixed-schedule',
          null,
          this.fixedMachineParam()
        )
        this.fixedExists = !!schedule
        if (schedule) {
          this.fixedForm = {
            times: schedule.times.join(', '),
            timezone: schedule.timezone,
            max_daily_limit: String(schedule.max_daily_limit),
            funding_wallet_id: schedule.funding_wallet_id
          }
        }
      } catch (error) {
        SM.notifyError(error, SM.t('fixed_could_not_load_the_schedule'))
      }
    },
    async saveFixedSchedule() {
      this.fixedSaving = true
      try {
        const times = this.fixedForm.times
          .split(/[\s,]+/)
          .map(t => t.trim())
          .filter(Boolean)
        await SM.request('PUT', '/fixed-schedule', {
          ...this.fixedMachineParam(),
          times,
          timezone: this.fixedForm.timezone,
          max_daily_limit: this.fixedForm.max_daily_limit,
          funding_wallet_id: this.fixedForm.funding_wallet_id || null
        })
        SM.notifyDone(SM.t('fixed_schedule_saved'))
        await this.loadFixedTab()
      } catch (error) {
        SM.notifyError(error, SM.t('fixed_could_not_save_the_schedule'))
      } finally {
        this.fixedSaving = false
      }
    },
    async deleteFixedSchedule() {
      try {
        await SM.request(
          'DELETE',
          '/fixed-schedule',
          null,
          this.fixedMachineParam()
        )
        SM.notifyDone(SM.t('fixed_schedule_removed'))
        this.fixedExists = false
        await this.loadFixedTab()
      } catch (error) {
        SM.notifyError(error, SM.t('fixed_could_not_remove_the_schedule'))
      }
    },
    async loadFixedPreviews() {
      this.fixedPreviewLoading = true
      try {
        this.fixedPreviews = await Promise.all(
          this.machines.map(async m => ({
            machine: m,
            preview: await SM.request(
              'GET',
              `/machines/${m.id}/fixed-slots/preview`
            )
          }))
        )
      } catch (error) {
        SM.notifyError(error, SM.t('fixed_could_not_load_the_next'))
      } finally {
        this.fixedPreviewLoading = false
      }
    },
    async runFixedSlot(machine) {
      this.fixedRunning = machine.id
      try {
        const result = await SM.request(
          'POST',
          `/machines/${machine.id}/fixed-slots/run`,
          {}
        )
        const run = result.run
        SM.notifyDone(
          SM.t('fixed_slot_result', {
            slot: run.slot_time,
            bought: run.lps_bought,
            skipped: run.lps_skipped
          }) + (run.reason ? ` (${run.reason})` : '')
        )
        await this.loadFixedPreviews()
      } catch (error) {
        SM.notifyError(error, SM.t('fixed_could_not_run_the_slot'))
      } finally {
        this.fixedRunning = null
      }
    },
    async loadNotifications() {
      try {
        const settings = await SM.request('GET', '/notifications')
        this.notifyForm = {
          webhook_url: settings.webhook_url || '',
          lnbits_channels: settings.lnbits_channels,
          stuck_after_minutes: settings.stuck_after_minutes,
          offline_after_minutes: settings.offline_after_minutes
        }
        this.notifyHasSecret = settings.has_webhook_secret
        this.notifyLog = await SM.request('GET', '/notifications/log', null, {
          limit: 100
        })
      } catch (error) {
        SM.notifyError(error, SM.t('fixed_could_not_load_the_notifications'))
      }
    },
    async saveNotifications(rotate) {
      this.notifySaving = true
      try {
        const settings = await SM.request('PUT', '/notifications', {
          ...this.notifyForm,
          webhook_url: this.notifyForm.webhook_url || null,
          rotate_secret: !!rotate
        })
        // Shown once: the server never returns it again.
        this.notifySecretShown = settings.webhook_secret
        this.notifyHasSecret = settings.has_webhook_secret
        SM.notifyDone(SM.t('fixed_notifications_saved'))
      } catch (error) {
        SM.notifyError(error, SM.t('fixed_could_not_save_the_notifications'))
      } finally {
        this.notifySaving = false
      }
    }
  },
  watch: {
    fixedScope() {
      this.fixedExists = false
      this.loadFixedSchedule()
    }
  }
}
