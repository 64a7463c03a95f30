// Publications (一月一公示, 季度先锋榜, 月度报告): what the staff pages and the public pages share — the kinds and
// their channels, the periods one may pick, the API paths (staff: the tenant's, with the session token; public:
// no token, released versions only) and downloading a channel's file.
import { session } from './session.js'
import { ApiError, errorFrom } from './api.js'

export const KINDS = ['monthly', 'boards', 'report']
export const STATUSES = ['draft', 'reviewed', 'returned', 'released']
export const STATUS_TYPES = { draft: 'info', reviewed: 'warning', returned: 'danger', released: 'success' }
// The channels of each kind (services/publication/channels/__init__.py CHANNELS); a publication's own list wins.
export const CHANNELS = {
  monthly: ['html_a4', 'html_a3', 'pdf_a4', 'pdf_a3', 'wechat', 'article', 'json'],
  boards: ['html_a4', 'html_a3', 'pdf_a4', 'pdf_a3', 'wechat', 'article', 'json'],
  report: ['html_a4', 'pdf_a4', 'xlsx', 'json'],
}
export const WHOLE = '*' // the scope of the whole subdistrict (全街道)

// Months and quarters in Asia/Shanghai, newest first: the closed ones (a month is published after it ends).
function shanghaiNow() {
  const d = new Date(Date.now() + 8 * 3600 * 1000)
  return { y: d.getUTCFullYear(), m: d.getUTCMonth() + 1 }
}
export function months(n = 24, includeCurrent = false) {
  let { y, m } = shanghaiNow()
  const out = []
  if (!includeCurrent) {
    m -= 1
    if (m === 0) { m = 12; y -= 1 }
  }
  for (let i = 0; i < n; i += 1) {
    out.push(`${y}-${String(m).padStart(2, '0')}`)
    m -= 1
    if (m === 0) { m = 12; y -= 1 }
  }
  return out
}
export function quarters(n = 8, includeCurrent = false) {
  const { y: y0, m } = shanghaiNow()
  let y = y0
  let q = Math.floor((m - 1) / 3) + 1
  const out = []
  if (!includeCurrent) {
    q -= 1
    if (q === 0) { q = 4; y -= 1 }
  }
  for (let i = 0; i < n; i += 1) {
    out.push(`${y}Q${q}`)
    q -= 1
    if (q === 0) { q = 4; y -= 1 }
  }
  return out
}
export const periodsOf = (kind) => (kind === 'boards' ? quarters() : months())

// "2026-11" → 2026年11月 / Nov 2026; "2026Q4" → 2026年第四季度 / 2026 Q4.
const QZH = ['一', '二', '三', '四']
export function periodLabel(period, locale) {
  const en = locale === 'en'
  let m = /^(\d{4})-(\d{2})$/.exec(period || '')
  if (m) return en ? `${m[1]}-${m[2]}` : `${m[1]}年${Number(m[2])}月`
  m = /^(\d{4})Q([1-4])$/.exec(period || '')
  if (m) return en ? `${m[1]} Q${m[2]}` : `${m[1]}年第${QZH[Number(m[2]) - 1]}季度`
  return period || '—'
}

// The API paths: staff (relative to /api/v1, the session token sent by api()) and public (absolute, no token).
export const staffBase = (tenant) => `tenants/${tenant}/publications`
export const publicBase = (tenant) => `/api/v1/public/tenants/${tenant}`
export const enc = (id) => encodeURIComponent(id)

// A channel's file: fetched with the session token when there is one (it lives in memory, not in a cookie, so
// a plain link could not carry it), then saved from a blob under the name the gateway gives it.
export async function download(path, fallbackName) {
  const headers = {}
  if (session.token) headers.Authorization = `Bearer ${session.token}`
  let resp
  try {
    resp = await fetch(path, { headers })
  } catch {
    throw new ApiError(0, 'network', '无法连接服务器，请检查网络 (cannot reach the server)')
  }
  if (!resp.ok) {
    let data = null
    try {
      data = await resp.json()
    } catch {
      data = null
    }
    throw errorFrom(resp.status, data)
  }
  const disposition = resp.headers.get('Content-Disposition') || ''
  const named = /filename\*=UTF-8''([^;]+)/i.exec(disposition) || /filename="?([^";]+)"?/i.exec(disposition)
  const name = named ? decodeURIComponent(named[1]) : fallbackName
  const url = URL.createObjectURL(await resp.blob())
  const a = document.createElement('a')
  a.href = url
  a.download = name
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10000)
  return name
}

// Copy a text to the clipboard (the WeChat parts); where the Clipboard API is refused, the old way.
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text)
    return true
  } catch {
    const area = document.createElement('textarea')
    area.value = text
    area.setAttribute('readonly', '')
    area.style.position = 'fixed'
    area.style.opacity = '0'
    document.body.appendChild(area)
    area.select()
    const ok = document.execCommand('copy')
    area.remove()
    return ok
  }
}

// A tenant's names for the public pages (GET /api/v1/tenants is open to anyone), once per page load.
let tenantsOnce = null
export async function tenantNamed(slug) {
  if (!tenantsOnce) tenantsOnce = fetch('/api/v1/tenants', { headers: { Accept: 'application/json' } }).then((r) => (r.ok ? r.json() : { tenants: [] })).catch(() => ({ tenants: [] }))
  const found = ((await tenantsOnce).tenants || []).find((x) => x.slug === slug)
  return found || null
}

// A community's name as a publication's title gives it ("岱宗社区 2026年11月 一月一公示" → 岱宗社区): the public
// has no org look-up, and the title is public by construction.
export function nameFromTitle(title) {
  return String(title || '').replace(/\s*\d{4}年.*$/, '').trim()
}

// The public API, read as anyone reads it: never with the session token (a signed-in person of another tenant,
// or a district role, would be refused what the anonymous reader may see). Errors as api() gives them.
export async function publicGet(path, query = {}) {
  const u = new URL(path, window.location.origin)
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v))
  let resp
  try {
    resp = await fetch(u.pathname + u.search, { headers: { Accept: 'application/json' } })
  } catch {
    throw new ApiError(0, 'network', '无法连接服务器，请检查网络 (cannot reach the server)')
  }
  let data = null
  try {
    data = await resp.json()
  } catch {
    data = null
  }
  if (!resp.ok) throw errorFrom(resp.status, data)
  return data
}
