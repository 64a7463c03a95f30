// Which tenant and community a page shows: the tenant is in the path (/<tenant>/…); the community is the
// community worker's own (fixed: the gateway refuses any other) or, for a subdistrict admin, ?community=
// (empty: the whole tenant).
import { computed, reactive } from 'vue'
import { useRoute, useRouter } from 'vue-router'
import { ownCommunity } from './session.js'

// Community names by id, as the header loaded them (pages show a community by its name).
export const communityNames = reactive({})

export function useScope() {
  const route = useRoute()
  const router = useRouter()
  const tenant = computed(() => String(route.params.tenant || ''))
  const fixedCommunity = computed(() => ownCommunity())
  const community = computed(() => fixedCommunity.value || String(route.query.community || ''))
  function setCommunity(id) {
    if (fixedCommunity.value) return
    router.replace({ query: { ...route.query, community: id || undefined } })
  }
  const communityName = computed(() => communityNames[community.value] || community.value)
  return { tenant, community, communityName, fixedCommunity, setCommunity }
}
