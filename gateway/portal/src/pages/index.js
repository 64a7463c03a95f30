// The portal's pages: ONE list, from which the router and the menu are both made. A later feature adds its
// page here with the roles that may open it (the gateway enforces the same roles on the API the page uses).
// `tenant: true` pages live under /<tenant>/…; `menu` puts the page in the side menu in this order.
const STAFF = ['community_worker', 'subdistrict_admin']
const APPROVERS = ['district_approver']
const ALLIANCE = [...STAFF, 'member'] // alliance pages: members claim and sign up as themselves

export const PAGES = [
  { name: 'dashboard', path: 'dashboard', tenant: true, roles: STAFF, menu: { icon: 'DataAnalysis' }, component: () => import('./DashboardPage.vue') },
  { name: 'map', path: 'map', tenant: true, roles: STAFF, menu: { icon: 'Location' }, component: () => import('./MapPage.vue') },
  { name: 'issues', path: 'issues', tenant: true, roles: STAFF, menu: { icon: 'Document' }, component: () => import('./IssuesPage.vue') },
  { name: 'issue', path: 'issues/:id', tenant: true, roles: STAFF, component: () => import('./IssuePage.vue'), props: true },
  { name: 'whistles', path: 'whistles', tenant: true, roles: STAFF, menu: { icon: 'Bell' }, component: () => import('./WhistlesPage.vue') },
  { name: 'tasks', path: 'tasks', tenant: true, roles: STAFF, menu: { icon: 'Tickets' }, component: () => import('./TasksPage.vue') },
  { name: 'org', path: 'org', tenant: true, roles: STAFF, menu: { icon: 'OfficeBuilding' }, component: () => import('./OrgPage.vue') },
  { name: 'field', path: 'field', tenant: true, roles: STAFF, menu: { icon: 'Iphone' }, component: () => import('./FieldPage.vue') },
  { name: 'approvals', path: 'approvals', roles: APPROVERS, menu: { icon: 'Stamp' }, component: () => import('./ApprovalsPage.vue') },
  { name: 'meetings', path: 'meetings', tenant: true, roles: STAFF, menu: { icon: 'ChatDotRound' }, component: () => import('./MeetingsPage.vue') },
  { name: 'meeting', path: 'meetings/:id', tenant: true, roles: ALLIANCE, component: () => import('./MeetingPage.vue'), props: true },
  { name: 'posts', path: 'alliance/posts', tenant: true, roles: ALLIANCE, menu: { icon: 'Flag' }, component: () => import('./PostsPage.vue') },
  { name: 'activities', path: 'alliance/activities', tenant: true, roles: ALLIANCE, menu: { icon: 'Calendar' }, component: () => import('./ActivitiesPage.vue') },
  { name: 'task', path: 'tasks/:id', tenant: true, roles: STAFF, component: () => import('./TaskPage.vue'), props: true },
  // The alliance ledger: pledges (members pledge for their unit), volunteer hours (a person's own), funds (staff).
  { name: 'resources', path: 'resources', tenant: true, roles: [...STAFF, 'member'], menu: { icon: 'Box' }, component: () => import('./ResourcesPage.vue') },
  { name: 'hours', path: 'hours', tenant: true, roles: [...STAFF, 'member'], menu: { icon: 'Timer' }, component: () => import('./HoursPage.vue') },
  { name: 'funds', path: 'funds', tenant: true, roles: STAFF, menu: { icon: 'Wallet' }, component: () => import('./FundsPage.vue') },
  // ---- evaluation: verification (验单): the queue, review rounds and on-site checks
  { name: 'verification', path: 'verification', tenant: true, roles: STAFF, menu: { icon: 'Finished' }, component: () => import('./VerificationPage.vue') },
  { name: 'review-round', path: 'verification/rounds/:id', tenant: true, roles: STAFF, component: () => import('./ReviewRoundPage.vue'), props: true },
  // ---- end verification
  // ---- evaluation: the quarterly boards (四榜) with each entrant's explanation
  { name: 'boards', path: 'evaluation/boards', tenant: true, roles: STAFF, menu: { icon: 'Trophy' }, component: () => import('./BoardsPage.vue') },
  // ---- end evaluation boards
]

// ---- Evaluation: ratings (评单). Staff read residents' ratings and record unit ratings; the reporter's own
// page (FollowPage, /follow/<tenant>/<issue>) is open without logging in and lives in router.js.
PAGES.push({ name: 'ratings', path: 'evaluation/ratings', tenant: true, roles: STAFF, menu: { icon: 'Star' }, component: () => import('./RatingsPage.vue') })

// 一月一公示 (publications): the list with the draft form, and one version with review
// and release. The public pages (/public/<tenant>…, no log-in) live in router.js.
PAGES.push(
  { name: 'publications', path: 'publications', tenant: true, roles: STAFF, menu: { icon: 'Memo' }, component: () => import('./PublicationsPage.vue') },
  { name: 'publication', path: 'publications/:id', tenant: true, roles: STAFF, component: () => import('./PublicationPage.vue'), props: true },
)

export const MENU = PAGES.filter((p) => p.menu)

// Where a person lands after logging in: the first page their role may open.
export function homeFor(role) {
  const page = PAGES.find((p) => p.menu && p.roles.includes(role))
  return page ? page.name : null
}
