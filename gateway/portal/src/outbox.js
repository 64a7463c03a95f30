// The grid worker's outbox: issues captured in the field (with photos and position) are kept on the device
// in IndexedDB until the gateway has them, then removed. Each carries an idempotency key made when it was
// captured, so a send that reached the server but whose answer was lost is sent again without filing the
// issue twice (intake returns the first issue for a key it has seen). The session token is never stored:
// sending waits until the person is logged in.
import { reactive } from 'vue'
import { createStore, del, entries, set } from 'idb-keyval'
import { ApiError, api } from './api.js'
import { session, signedIn } from './session.js'

const store = createStore('hongling-field', 'outbox')
export const outbox = reactive({ items: [], sent: [], sending: false, online: navigator.onLine })
const RETRY_MS = 20000

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID()
  const b = crypto.getRandomValues(new Uint8Array(16))
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
}

export async function refresh() {
  const all = (await entries(store)).map(([, v]) => v)
  outbox.items = all.sort((a, b) => (a.captured_at < b.captured_at ? -1 : 1))
}

// Keep a captured issue on the device, then try to send everything waiting.
export async function capture(tenant, issue, photos) {
  const key = newKey()
  await set(key, { key, tenant, by: session.me.sub, issue: { ...issue, idempotency_key: key }, photos, captured_at: new Date().toISOString(), error: '' }, store)
  await refresh()
  sendAll()
  return key
}

export async function discard(key) {
  await del(key, store)
  await refresh()
}

async function sendOne(item) {
  const form = new FormData()
  form.append('issue', JSON.stringify(item.issue))
  for (const p of item.photos || []) form.append('attachments', p.blob, p.name)
  return (await api(`tenants/${item.tenant}/issues`, { method: 'POST', form })).issue
}

// Send every issue this person captured, oldest first; stop at the first that cannot be sent for now.
export async function sendAll() {
  if (outbox.sending || !signedIn()) return
  outbox.sending = true
  try {
    await refresh()
    for (const item of outbox.items.filter((x) => x.by === session.me.sub)) {
      try {
        const issue = await sendOne(item)
        await del(item.key, store)
        outbox.sent.unshift({ key: item.key, id: issue.id, title: issue.title, tenant: item.tenant })
      } catch (e) {
        const retry = e.status === 0 || e.status === 401 || e.status === 408 || e.status === 429 || e.status >= 500 || !(e instanceof ApiError)
        if (retry) break // the connection or the server: try again later, in the same order
        await set(item.key, { ...item, error: e.message, field: e.field }, store) // the API refused it: say why
      }
    }
  } finally {
    outbox.sending = false
    await refresh()
  }
}

let started = false
export function startOutbox() {
  if (started) return
  started = true
  window.addEventListener('online', () => {
    outbox.online = true
    sendAll()
  })
  window.addEventListener('offline', () => (outbox.online = false))
  setInterval(sendAll, RETRY_MS)
  refresh()
}
