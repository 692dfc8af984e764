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

  // A message of this extension in the language LNbits shows
  // (static/i18n/<lang>.js, merged into LNbits' vue-i18n).
  function t(key, params) {
    return window.i18n.global.t(`satmachineadmin.${key}`, params || {})
  }

  // A status, mode or other word the API gives in English, in the page's
  // language (the word itself when there is no translation).
  function word(value) {
    if (value === null || value === undefined || value === '') return '–'
    const key = `satmachineadmin.word.${value}`
    return window.i18n.global.te(key) || window.i18n.global.te(key, 'en')
      ? window.i18n.global.t(key)
      : String(value)
  }

  // A reason the API gives in English (a skipped slot's), in the page's
  // language when it is one of the known ones; else as the API wrote it.
  function reason(text) {
    if (!text) return ''
    const slug = String(text)
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '')
    const key = `satmachineadmin.reason.${slug}`
    return window.i18n.global.te(key) || window.i18n.global.te(key, 'en')
      ? window.i18n.global.t(key)
      : String(text)
  }

  function locale() {
    return (window.i18n && window.i18n.global.locale) || 'en'
  }

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
        ? t('error_unreachable_because', {reason: error.message})
        : t('error_unreachable')
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
    if (response.status === 401) return t('error_logged_out')
    if (response.status === 404) return t('error_not_found')
    return t('error_status', {
      status: `${response.status} ${response.statusText || ''}`.trim()
    })
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
      return new Intl.NumberFormat(locale(), {
        style: 'currency',
        currency: currency || 'USD'
      }).format(Number(value))
    } catch (e) {
      return `${Number(value).toLocaleString(locale())} ${currency || ''}`.trim()
    }
  }

  // A fraction from the API (0.3) shown as a percentage ("30 %").
  function percent(fraction) {
    if (fraction === null || fraction === undefined || fraction === '')
      return '–'
    const units = Math.round(Number(fraction) * WHOLE)
    return `${decimalText(unitsToPercentText(units))} %`
  }

  // "12.5" written in the page's language ("12,5" in Spanish).
  function decimalText(text) {
    const separator = new Intl.NumberFormat(locale())
      .formatToParts(1.5)
      .find(part => part.type === 'decimal')
    return separator ? String(text).replace('.', separator.value) : text
  }

  // A moment, in the page's language and the browser's time zone.
  function date(value) {
    if (!value) return '–'
    const when = new Date(value)
    if (Number.isNaN(when.getTime())) return String(value)
    return new Intl.DateTimeFormat(locale(), {
      dateStyle: 'medium',
      timeStyle: 'short'
    }).format(when)
  }

  // A day for chart labels: "2026-12-01" stays as it is (no time zone
  // shift); a timestamp becomes its local date.
  function day(value) {
    if (!value) return '–'
    const format = new Intl.DateTimeFormat(locale(), {
      day: 'numeric',
      month: 'short'
    })
    if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
      const [y, m, d] = value.split('-').map(Number)
      return format.format(new Date(y, m - 1, d))
    }
    return format.format(new Date(value))
  }

  // A cumulative series as steps, one entry per UTC day from ``start`` to
  // ``end`` (YYYY-MM-DD): a day without payouts keeps the day before's total,
  // so the line is flat across it and climbs only on days that had payouts.
  // ``marked``: a day that had payouts, or the range's first or last day.
  function stepSeries(points, start, end, startTotal) {
    const byDay = new Map(points.map(p => [p.date, p]))
    const first = start || (points.length ? points[0].date : null)
    if (!first) return []
    let last = end || first
    if (points.length && points[points.length - 1].date > last) {
      last = points[points.length - 1].date
    }
    const days = []
    let total = Number(startTotal || 0)
    const at = new Date(`${first}T00:00:00Z`)
    const stop = new Date(`${last}T00:00:00Z`)
    while (at <= stop) {
      const day = at.toISOString().slice(0, 10)
      const point = byDay.get(day)
      if (point) total = Number(point.cumulative_sats)
      days.push({
        date: day,
        sats: point ? Number(point.sats) : 0,
        cumulative_sats: total,
        marked: !!point || day === first || day === last
      })
      at.setUTCDate(at.getUTCDate() + 1)
    }
    return days
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
    if (!value) return required ? t('input_enter_amount') : null
    if (!/^\d+(\.\d+)?$/.test(value)) return t('input_digits_only')
    if (Number(value) <= 0) return t('input_more_than_zero')
    const decimals = (value.split('.')[1] || '').length
    const allowed = currencyDecimals(currency)
    if (decimals > allowed) {
      return t('input_decimals', {currency, allowed})
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
      parts.push(
        t('for_amount', {amount: fiat(last.fiat_amount, last.currency || currency)})
      )
    }
    if (when) parts.push(t('on_date', {when: date(when)}))
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
    if (when) parts.push(t('on_date', {when: date(when)}))
    return parts.join(' ') || '–'
  }

  function autoforwardSummary(autoforward) {
    if (!autoforward || !autoforward.enabled) return t('af_off')
    let text = t('af_to', {address: autoforward.address})
    if (autoforward.threshold_sats) {
      text += ' ' + t('af_from', {sats: sats(autoforward.threshold_sats)})
    }
    if (autoforward.waiting_sats) {
      text += ' · ' + t('af_waiting', {sats: sats(autoforward.waiting_sats)})
    }
    if (autoforward.forwarded_sats) {
      text += ' · ' + t('af_forwarded', {sats: sats(autoforward.forwarded_sats)})
    }
    if (autoforward.failures) {
      text += ' · ' + t('af_failing', {tries: autoforward.failures})
      if (autoforward.next_try_at) {
        text += ' · ' + t('af_next', {when: date(autoforward.next_try_at)})
      }
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
  // Leg types in words, read in the page's language when shown.
  const LEG_TYPES = {}
  ;[
    'super_fee',
    'operator_split',
    'dca',
    'settlement',
    'autoforward',
    'refund'
  ].forEach(type => {
    Object.defineProperty(LEG_TYPES, type, {
      enumerable: true,
      get: () => t(`leg.${type}`)
    })
  })

  // A select option whose label follows the page's language.
  function option(value, label) {
    return {
      value,
      get label() {
        return typeof label === 'function' ? label() : label
      }
    }
  }

  return {
    API,
    t,
    word,
    reason,
    locale,
    decimalText,
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
    stepSeries,
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
      option(s, () => word(s))
    ),
    legStatusOptions: Object.keys(LEG_COLORS).map(s =>
      option(s, () => word(s))
    ),
    legTypeOptions: Object.keys(LEG_TYPES).map(v =>
      option(v, () => LEG_TYPES[v])
    )
  }
})()
