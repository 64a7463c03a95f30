// The portal's service worker: the app itself (index.html and every content-hashed file of this build) keeps
// opening without a connection, so a grid worker's device still shows what waits to be sent. The API is never
// cached: its requests are not touched here at all. The build (vite.config.js) fills in its id and files, so
// each build is a new worker with a cache of its own, and the previous build's cache is deleted.
const CACHE = 'hongling-portal-__BUILD__'
const ASSETS = __ASSETS__
const SCOPE = new URL(self.registration.scope).pathname // /portal/

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE).then((c) => c.addAll([SCOPE, ...ASSETS.map((f) => SCOPE + f)])).then(() => self.skipWaiting()),
  )
})
self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys().then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n)))).then(() => self.clients.claim()),
  )
})
self.addEventListener('fetch', (event) => {
  const req = event.request
  const url = new URL(req.url)
  if (req.method !== 'GET' || url.origin !== self.location.origin || !url.pathname.startsWith(SCOPE)) return
  if (url.pathname.startsWith(`${SCOPE}assets/`)) {
    // Content-hashed: a cached copy is the right one for ever.
    event.respondWith(
      caches.match(req).then((hit) => hit || fetch(req).then((resp) => {
        if (resp.ok) caches.open(CACHE).then((c) => c.put(req, resp.clone()))
        return resp
      })),
    )
  } else if (req.mode === 'navigate') {
    // A page of the app: the network's index.html when there is one (new builds), else the cached one.
    event.respondWith(
      fetch(req).then((resp) => {
        if (resp.ok) caches.open(CACHE).then((c) => c.put(SCOPE, resp.clone()))
        return resp
      }).catch(() => caches.match(SCOPE)),
    )
  }
})
