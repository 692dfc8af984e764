// Shared helpers for the satmachineadmin page: the API client, error messages
// in words, number formatting and exact percentage arithmetic.
// Loaded before the tab mixins and index.js; everything lives on window.SM.

window.SM = (function () {
  const API = '/satmachineadmin/api/v1/dca'

  // Percentages are typed as percent with at most 4 decimals ("33.3333") and
  // sent as exact fractions ("0.333333"). Arithmetic happens on integers:
  // one unit is 0.0001 %, so 100 % is 1 000 000 units.
  const PERCENT_UNITS = 10000
  const WHOLE = 100 * PERCENT_UNITS

  function query(params) {
    const search = new URLSearchParams()
    Object.entries(params || {}).forEach(([key, value]) => {
      if (value !== null && value !== undefined && value !== '') {
        search.set(key, value)
      }
    })
    const text = search.toString()
    return text ? `?${text}` : ''
  }

  // The API authenticates the logged-in user by LNbits' session cookie: no
  // wallet key is sent (LNbits.api.request leaves out a null X-Api-Key).
  async function request(method, path, data, params) {
    const response = await LNbits.api.request(
      method,
      API + path + query(params),
      null,
      data
    )
    return response.data
  }

  function fieldName(loc) {
    return (loc || [])
      .filter(part => part !== 'body' && part !== 'query' && part !== 'path')
      .join('.')
  }

  // What went wrong, in words: the API's own reason where it gives one.
  function errorText(error) {
    const response = error && error.response
    if (!response) {
      return error && error.message
        ? `The server could not be reached (${error.message}).`
        : 'The server could not be reached.'
    }
    const detail = response.data && response.data.detail
    if (Array.isArray(detail)) {
      return detail
        .map(item => {
          const field = fieldName(item.loc)
          return field ? `${field}: ${item.msg}` : item.msg
        })
        .join('; ')
    }
    if (typeof detail === 'string' && detail) return detail
    if (response.status === 401) return 'You are not logged in any more.'
    if (response.status === 404) return 'Not found (it may have been removed).'
    return `The server answered ${response.status} ${response.statusText || ''}`
  }

  function notifyError(error, action) {
    Quasar.Notify.create({
      type: 'negative',
      message: action ? `${action}: ${errorText(error)}` : errorText(error),
      timeout: 8000,
      closeBtn: true,
      multiLine: true
    })
  }

  function notifyDone(message) {
    Quasar.Notify.create({type: 'positive', message, timeout: 2500})
  }

  function sats(value) {
    if (value === null || value === undefined || value === '') return '–'
    return `${LNbits.utils.formatSat(value)} sats`
  }

  function fiat(value, currency) {
    if (value === null || value === undefined || value === '') return '–'
    try {
      return LNbits.utils.formatCurrency(Number(value), currency)
    } catch (e) {
      return `${Number(value).toLocaleString()} ${currency || ''}`.trim()
    }
  }

  // A fraction from the API (0.3) shown as a percentage ("30 %").
  function percent(fraction) {
    if (fraction === null || fraction === undefined || fraction === '')
      return '–'
    const units = Math.round(Number(fraction) * WHOLE)
    return `${unitsToPercentText(units)} %`
  }

  function date(value) {
    return value ? LNbits.utils.formatDate(value) : '–'
  }

  // A day for chart labels: "2026-12-01" stays as it is (no time zone
  // shift); a timestamp becomes its local date.
  function day(value) {
    if (!value) return '–'
    if (/^\d{4}-\d{2}-\d{2}$/.test(value)) return value
    return new Date(value).toLocaleDateString(window.i18n.global.locale)
  }

  function shortId(value, length = 8) {
    if (!value) return '–'
    return value.length > length + 1 ? `${value.slice(0, length)}…` : value
  }

  // "12.5" -> 125000 units; null when it is not a percentage with at most
  // 4 decimals between 0 and 100.
  function parsePercent(text) {
    const value = String(text === null || text === undefined ? '' : text)
      .trim()
      .replace(',', '.')
    const match = /^(\d{1,3})(?:\.(\d{1,4}))?$/.exec(value)
    if (!match) return null
    const units =
      Number(match[1]) * PERCENT_UNITS + Number((match[2] || '').padEnd(4, '0'))
    return units <= WHOLE ? units : null
  }

  function unitsToPercentText(units) {
    const whole = Math.trunc(units / PERCENT_UNITS)
    const rest = String(Math.abs(units % PERCENT_UNITS))
      .padStart(4, '0')
      .replace(/0+$/, '')
    return rest ? `${whole}.${rest}` : String(whole)
  }

  // 125000 units -> "0.125", the exact fraction the API expects.
  function unitsToFraction(units) {
    if (units >= WHOLE) return '1'
    const digits = String(units).padStart(6, '0').replace(/0+$/, '')
    return digits ? `0.${digits}` : '0'
  }

  function fractionToPercentText(fraction) {
    return unitsToPercentText(Math.round(Number(fraction) * WHOLE))
  }

  // Decimals a currency is written with (GTQ 2, JPY 0).
  function currencyDecimals(currency) {
    try {
      return new Intl.NumberFormat('en', {
        style: 'currency',
        currency
      }).resolvedOptions().maximumFractionDigits
    } catch (e) {
      return 2
    }
  }

  // A positive amount typed by a person, checked against the currency.
  function fiatInputError(text, currency, required = true) {
    const value = String(text === null || text === undefined ? '' : text).trim()
    if (!value) return required ? 'Enter an amount' : null
    if (!/^\d+(\.\d+)?$/.test(value)) return 'Digits and one decimal point only'
    if (Number(value) <= 0) return 'Must be more than zero'
    const decimals = (value.split('.')[1] || '').length
    const allowed = currencyDecimals(currency)
    if (decimals > allowed) {
      return `${currency} takes at most ${allowed} decimals`
    }
    return null
  }

  function present(value) {
    return value !== null && value !== undefined
  }

  // A count with thousands separators ("1,204").
  function count(value) {
    if (value === null || value === undefined || value === '') return '–'
    return LNbits.utils.formatSat(value)
  }

  // A gain or loss, with its sign: "+GTQ 12.00", "-GTQ 3.50".
  function signedFiat(value, currency) {
    if (value === null || value === undefined || value === '') return '–'
    const number = Number(value)
    const text = fiat(Math.abs(number), currency)
    return number > 0 ? `+${text}` : number < 0 ? `-${text}` : text
  }

  function gainClass(value) {
    if (value === null || value === undefined || value === '') return ''
    const number = Number(value)
    return number > 0 ? 'text-positive' : number < 0 ? 'text-negative' : ''
  }

  // The last purchase as the API gives it: a payout, or only its date.
  function lastPurchase(last, currency) {
    if (!last) return '–'
    if (typeof last === 'string') return date(last)
    const when = last.completed_at || last.created_at || last.date
    const amount =
      last.amount_sats === undefined ? last.sats : last.amount_sats
    const parts = []
    if (amount !== undefined && amount !== null) parts.push(sats(amount))
    if (last.fiat_amount !== undefined && last.fiat_amount !== null) {
      parts.push(`for ${fiat(last.fiat_amount, last.currency || currency)}`)
    }
    if (when) parts.push(`on ${date(when)}`)
    return parts.join(' ') || '–'
  }

  // The next fixed-mode buy: a time, or {at, amount / fiat_amount}.
  function nextBuy(next, currency) {
    if (!next) return '–'
    if (typeof next === 'string') return date(next)
    const when = next.at || next.scheduled_at || next.date
    const amount = next.amount === undefined ? next.fiat_amount : next.amount
    const parts = []
    if (amount !== undefined && amount !== null) {
      parts.push(fiat(amount, next.currency || currency))
    }
    if (when) parts.push(`on ${date(when)}`)
    return parts.join(' ') || '–'
  }

  function autoforwardSummary(autoforward) {
    if (!autoforward || !autoforward.enabled) return 'Autoforward off'
    let text = `Forwards to ${autoforward.address}`
    if (autoforward.threshold_sats) {
      text += ` from ${sats(autoforward.threshold_sats)}`
    }
    if (autoforward.waiting_sats) {
      text += ` · ${sats(autoforward.waiting_sats)} waiting`
    }
    if (autoforward.forwarded_sats) {
      text += ` · ${sats(autoforward.forwarded_sats)} forwarded`
    }
    if (autoforward.failures) {
      text += ` · failing (${autoforward.failures} tries`
      if (autoforward.next_try_at) {
        text += `, next ${date(autoforward.next_try_at)}`
      }
      text += ')'
    }
    return text
  }

  const SETTLEMENT_COLORS = {
    pending: 'grey',
    processing: 'warning',
    processed: 'positive',
    errored: 'negative',
    partial: 'orange',
    refunded: 'purple',
    awaiting_funds: 'amber'
  }
  const LEG_COLORS = {
    pending: 'warning',
    completed: 'positive',
    failed: 'negative',
    skipped: 'grey',
    voided: 'grey-6'
  }
  const LEG_TYPES = {
    super_fee: 'Platform fee',
    operator_split: 'Commission split',
    dca: 'DCA payout',
    settlement: 'LP settlement',
    autoforward: 'Auto-forward',
    refund: 'Refund'
  }

  function option(value, label) {
    return {value, label}
  }

  return {
    API,
    request,
    query,
    errorText,
    notifyError,
    notifyDone,
    sats,
    fiat,
    percent,
    date,
    day,
    shortId,
    parsePercent,
    unitsToPercentText,
    unitsToFraction,
    fractionToPercentText,
    currencyDecimals,
    fiatInputError,
    present,
    count,
    signedFiat,
    gainClass,
    lastPurchase,
    nextBuy,
    autoforwardSummary,
    WHOLE,
    SETTLEMENT_COLORS,
    LEG_COLORS,
    LEG_TYPES,
    settlementStatusOptions: Object.keys(SETTLEMENT_COLORS).map(s =>
      option(s, s)
    ),
    legStatusOptions: Object.keys(LEG_COLORS).map(s => option(s, s)),
    legTypeOptions: Object.entries(LEG_TYPES).map(([v, l]) => option(v, l))
  }
})()
