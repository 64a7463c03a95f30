import { createRouter, createWebHistory } from 'vue-router'
import { PAGES, homeFor } from './pages/index.js'
import { allowed, session, signedIn, role } from './session.js'
import LoginPage from './pages/LoginPage.vue'
import Shell from './layout/Shell.vue'

const routes = [
  { path: '/login', name: 'login', component: LoginPage, meta: { public: true } },
  // ---- Evaluation: the reporter follows, rates or rejects with the follow-up code (typed on the page, never
  // in the address), without logging in.
  { path: '/follow/:tenant/:id?', name: 'follow', component: () => import('./pages/FollowPage.vue'), meta: { public: true } },
  // the released publications, open to anyone without logging in (公示公开).
  { path: '/public/:tenant', name: 'public-publications', component: () => import('./pages/PublicPublicationsPage.vue'), meta: { public: true } },
  { path: '/public/:tenant/publications/:id', name: 'public-publication', component: () => import('./pages/PublicPublicationPage.vue'), props: true, meta: { public: true } },
  { path: '/public/:tenant/ledger', name: 'public-ledger', component: () => import('./pages/PublicLedgerPage.vue'), meta: { public: true } },
  {
    path: '/',
    component: Shell,
    children: [
      { path: '', name: 'home', component: { render: () => null } },
      ...PAGES.map((p) => ({
        path: p.tenant ? `:tenant/${p.path}` : p.path,
        name: p.name,
        component: p.component,
        props: p.props,
        meta: { roles: p.roles, tenant: Boolean(p.tenant) },
      })),
    ],
  },
  { path: '/:rest(.*)*', redirect: '/' },
]

export const router = createRouter({ history: createWebHistory('/portal/'), routes })

export function firstTenant() {
  return session.tenants.length ? session.tenants[0].slug : ''
}

router.beforeEach((to) => {
  if (to.meta.public) return true
  if (!signedIn()) return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (to.name === 'home' || !allowed(to.meta.roles)) {
    const home = homeFor(role())
    if (!home) return { name: 'login', query: { refused: '1' } }
    return { name: home, params: { tenant: firstTenant() } }
  }
  if (to.meta.tenant && !session.tenants.some((t) => t.slug === to.params.tenant)) {
    return { name: to.name, params: { ...to.params, tenant: firstTenant() }, query: to.query }
  }
  return true
})
