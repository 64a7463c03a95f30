// Times are stored in UTC and shown in Asia/Shanghai, whatever the browser's own zone.
export const ZONE = 'Asia/Shanghai'

const cache = new Map()
function fmt(locale, opts) {
  const key = locale + JSON.stringify(opts)
  if (!cache.has(key)) cache.set(key, new Intl.DateTimeFormat(locale, { timeZone: ZONE, hour12: false, ...opts }))
  return cache.get(key)
}

export function dateTime(iso, locale = 'zh-CN') {
  if (!iso) return '—'
  return fmt(locale, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' }).format(
    new Date(iso),
  )
}

export function day(iso, locale = 'zh-CN') {
  if (!iso) return '—'
  return fmt(locale, { month: '2-digit', day: '2-digit' }).format(new Date(iso))
}

// "2 h 05 min" / "2小时05分" from seconds (negative: overdue).
export function duration(seconds, locale = 'zh-CN') {
  const s = Math.abs(Math.round(seconds))
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  const zh = locale.startsWith('zh')
  const parts = []
  if (d) parts.push(zh ? `${d}天` : `${d} d`)
  if (h || d) parts.push(zh ? `${h}小时` : `${h} h`)
  if (!d) parts.push(zh ? `${String(m).padStart(2, '0')}分` : `${m} min`)
  if (!d && !h) parts.push(zh ? `${String(sec).padStart(2, '0')}秒` : `${sec} s`)
  return parts.join(zh ? '' : ' ')
}

// A countdown that visibly ticks: "2天 23:59:41" / "2 d 23:59:41" (negative: the time past the deadline).
export function countdown(seconds, locale = 'zh-CN') {
  const s = Math.abs(Math.floor(seconds))
  const d = Math.floor(s / 86400)
  const hms = [Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, '0')).join(':')
  if (!d) return hms
  return locale.startsWith('zh') ? `${d}天 ${hms}` : `${d} d ${hms}`
}
