// The gateway's HTTP API, the only thing the portal talks to. Every call sends the session token; an
// error answer ({"error": {"code", "message", "field"}}) becomes an ApiError carrying the API's own
// message and field, so forms can show it beside the field. A call slower than a moment shows the
// progress bar (see busy), never a frozen page.
import { reactive } from 'vue'
import { session, endSession } from './session.js'

export const busy = reactive({ pending: 0, slow: false })
const SLOW_MS = 300
const TIMEOUT_MS = 30000

export class ApiError extends Error {
  constructor(status, code, message, field, details) {
    super(message)
    this.status = status
    this.code = code
    this.field = field || ''
    this.details = details || null
  }
}

// The API's error answer ({"error": {code, message, field}}) of an HTTP status, as an ApiError.
export function errorFrom(status, data) {
  const err = (data && data.error) || {}
  return new ApiError(status, err.code || 'http_error', err.message || `HTTP ${status}`, err.field, err.details)
}

let onExpired = () => {}
export function whenSessionExpires(fn) {
  onExpired = fn
}

function url(path, query) {
  const u = new URL(path.startsWith('/') ? path : `/api/v1/${path}`, window.location.origin)
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v))
  }
  return u.pathname + u.search
}

export async function api(path, { method = 'GET', query, body, form, headers = {}, blob = false } = {}) {
  const h = { Accept: 'application/json', ...headers }
  if (session.token) h.Authorization = `Bearer ${session.token}`
  let payload
  if (form) payload = form
  else if (body !== undefined) {
    h['Content-Type'] = 'application/json'
    payload = JSON.stringify(body)
  }
  const ctrl = new AbortController()
  const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS)
  busy.pending += 1
  const slow = setTimeout(() => {
    busy.slow = busy.pending > 0
  }, SLOW_MS)
  let resp
  try {
    resp = await fetch(url(path, query), { method, headers: h, body: payload, signal: ctrl.signal })
  } catch (e) {
    const timedOut = e && e.name === 'AbortError'
    throw new ApiError(
      0,
      timedOut ? 'timeout' : 'network',
      timedOut ? '请求超时，请稍后重试 (the request timed out; try again)' : '无法连接服务器，请检查网络 (cannot reach the server)',
    )
  } finally {
    clearTimeout(timer)
    clearTimeout(slow)
    busy.pending -= 1
    if (busy.pending === 0) busy.slow = false
  }
  if (resp.status === 204) return null
  if (blob && resp.ok) return { blob: await resp.blob(), etag: resp.headers.get('ETag') }
  const text = await resp.text()
  let data = null
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      data = null
    }
  }
  if (!resp.ok) {
    if (resp.status === 401 && session.token) {
      endSession('expired')
      onExpired()
    }
    throw errorFrom(resp.status, data)
  }
  if (data && typeof data === 'object' && resp.headers.get('ETag')) Object.defineProperty(data, 'etag', { value: resp.headers.get('ETag') })
  return data
}

// Every page of a paged list (next_page_token), up to `limit` items.
export async function pages(path, key, query = {}, limit = 500) {
  const out = []
  let token = ''
  do {
    const data = await api(path, { query: { ...query, page_size: 100, page_token: token } })
    out.push(...(data[key] || []))
    token = data.next_page_token || ''
  } while (token && out.length < limit)
  return out
}
