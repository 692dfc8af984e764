// The satmachineadmin page: an operator console (machines, LPs and deposits,
// commission splits, settlements, payment legs), the super user's platform
// fee and an LP's own positions. Each tab's state and actions live in a
// mixin (machines.js, lps.js, splits.js, settlements.js, positions.js);
// helpers.js holds the API client and formatting (window.SM).

window.app = Vue.createApp({
  el: '#vue',
  mixins: [
    windowMixin,
    SMMachines,
    SMClients,
    SMSplits,
    SMSettlements,
    SMPositions,
    SMSources,
    SMLamassuField,
    SMFixed,
    SMOverview,
    SMInvites,
    SMReconciliation
  ],
  data() {
    return {
      tab: 'overview',
      starting: true,
      // An LP who owns no machine sees its positions; the operator's tabs
      // come back with "I run machines".
      showOperator: false,
      sm: window.SM
    }
  },
  computed: {
    isSuperUser() {
      return !!(this.g.user && this.g.user.super_user)
    },
    ownWallets() {
      return (this.g.user && this.g.user.wallets) || []
    },
    walletById() {
      return Object.fromEntries(this.ownWallets.map(w => [w.id, w]))
    },
    ownWalletOptions() {
      return this.ownWallets.map(w => ({
        value: w.id,
        label: `${w.name} (${SM.sats(this.walletBalance(w.id))})`
      }))
    },
    operatorView() {
      return (
        this.showOperator ||
        !this.machinesLoaded ||
        this.machines.length > 0 ||
        !this.hasPositions
      )
    },
    // The first-run guide of an operator without machines: each step, its
    // words (keys of static/i18n) and where its button leads.
    firstRunSteps() {
      const go = tab => () => {
        this.tab = tab
      }
      return [
        {
          title: 'first_run_add_a_machine',
          text: 'first_run_its_nostr_npub_its_currency',
          button: 'first_run_add_a_machine',
          test: 'first-run-add-machine',
          go: () => {
            this.tab = 'machines'
            this.openMachineDialog(null)
          }
        },
        {
          title: 'first_run_invite_a_liquidity_provider',
          text: 'first_run_send_an_invite_link_the',
          button: 'first_run_lps_deposits',
          go: go('lps')
        },
        {
          title: 'first_run_set_the_commission_split',
          text: 'first_run_which_of_your_wallets_receive',
          button: 'first_run_splits',
          go: go('splits')
        },
        {
          title: 'first_run_where_sales_come_from',
          text: 'first_run_a_bitspire_machine_pays_each'
        }
      ]
    },
    userId() {
      return this.g.user ? this.g.user.id : ''
    }
  },
  methods: {
    // LNbits keeps g.user.wallets[].sat current from its payment websocket.
    walletBalance(walletId) {
      const wallet = this.walletById[walletId]
      return wallet ? wallet.sat : null
    },
    walletLabel(walletId) {
      const wallet = this.walletById[walletId]
      return wallet ? wallet.name : SM.t('wallet_short', {id: SM.shortId(walletId)})
    },
    // Balances change as machines sell: read them again from LNbits.
    async refreshWalletBalances() {
      try {
        const {data} = await LNbits.api.request('GET', '/api/v1/auth')
        const msat = Object.fromEntries(
          (data.wallets || []).map(w => [w.id, w.balance_msat])
        )
        this.ownWallets.forEach(w => {
          if (w.id in msat) w.sat = Math.floor(msat[w.id] / 1000)
        })
      } catch (error) {
        SM.notifyError(error, SM.t('index_could_not_read_the_wallet'))
      }
    },
    copy(text, what) {
      LNbits.utils.copyText(text, SM.t('copied', {what}))
    },
    loadTab(tab) {
      const loaders = {
        overview: () => this.loadOverview(),
        machines: () => this.loadMachines(),
        lps: () => this.loadLpTab(),
        splits: () => this.loadSplits(),
        settlements: () => this.loadSettlements(),
        payments: () => this.loadPayments(),
        platform: () => this.loadSuperConfig(),
        positions: () => this.loadPositions(),
        fixed: () => this.loadFixedTab()
      }
      if (loaders[tab]) return loaders[tab]()
    }
  },
  watch: {
    tab(tab) {
      this.loadTab(tab)
    },
    paymentFilter: {
      deep: true,
      handler() {
        if (this.tab === 'payments') this.loadPayments()
      }
    },
    settlementFilter: {
      deep: true,
      handler() {
        if (this.tab === 'settlements') this.loadSettlements()
      }
    }
  },
  async created() {
    // LNbits 1.6's drawer reads g.wallet.id on every payment event and throws
    // on a page without a current wallet: give it the user's first wallet.
    if (this.g.user && !this.g.wallet && this.ownWallets.length) {
      this.g.wallet = this.ownWallets[0]
    }
    // Machines and positions decide the first tab: an LP without machines
    // lands on their positions.
    await Promise.all([
      this.loadMachines(),
      this.loadPositions(),
      this.loadSuperConfig()
    ])
    if (!this.machines.length && this.positions.length) {
      this.tab = 'positions'
    } else {
      await this.loadOverview()
    }
    this.starting = false
    // An invite link (?invite=CODE) opens the dialog to accept it.
    this.openInviteFromUrl()
  }
})
