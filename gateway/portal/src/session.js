// The signed-in person: kept in this page's memory only (never localStorage or sessionStorage), so closing
// or reloading the tab ends the session in the browser; the gateway's token lives 30 minutes at most.
import { reactive, readonly } from 'vue'

const state = reactive({
  token: null, // the session token (a JWT from POST /api/v1/auth/login)
  expiresAt: 0, // ms since the epoch
  me: null, // GET /api/v1/auth/me: sub, role, tenants, community_id, display_name, responder
  tenants: [], // [{slug, name_zh, name_en}] the person may act on
  endedBecause: '', // why the last session ended: '', 'expired', 'logout'
})

export const session = readonly(state)

export function signedIn() {
  return Boolean(state.token) && Date.now() < state.expiresAt
}

export function startSession(token, expiresInSeconds, me, tenants) {
  state.token = token
  state.expiresAt = Date.now() + expiresInSeconds * 1000
  state.me = me
  state.tenants = tenants
  state.endedBecause = ''
}

export function endSession(reason) {
  state.token = null
  state.expiresAt = 0
  state.me = null
  state.tenants = []
  state.endedBecause = reason
}

export function role() {
  return state.me ? state.me.role : 'public'
}

// May the signed-in person open a page meant for these roles?
export function allowed(roles) {
  return !roles || roles.includes(role())
}

// The community a community worker works for ('' for everyone else).
export function ownCommunity() {
  return (state.me && state.me.community_id) || ''
}
