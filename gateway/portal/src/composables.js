// Small shared behaviours of pages.
import { onBeforeUnmount, onMounted, ref } from 'vue'

// `now` as a ref that ticks every `ms` (countdowns), stopped with the component.
export function useNow(ms = 1000) {
  const now = ref(Date.now())
  let timer
  onMounted(() => (timer = setInterval(() => (now.value = Date.now()), ms)))
  onBeforeUnmount(() => clearInterval(timer))
  return now
}

// Call `fn` now and every `ms` while the page is open and visible (a live board), never two at once.
export function usePolling(fn, ms) {
  let timer
  let running = false
  async function tick() {
    if (running || document.hidden) return
    running = true
    try {
      await fn()
    } finally {
      running = false
    }
  }
  onMounted(() => {
    tick()
    timer = setInterval(tick, ms)
  })
  onBeforeUnmount(() => clearInterval(timer))
  return tick
}

// After a write, until the read side shows it: `load()` again, less and less often (0.3 s doubling to 3 s), while
// `shown()` is false, for up to a minute (the read side follows within moments, longer while the stack is
// busy). Returns whether it showed.
export async function untilShown(load, shown, within = 60000) {
  const started = Date.now()
  for (let wait = 300; ; wait = Math.min(wait * 2, 3000)) {
    await load()
    if (shown()) return true
    if (Date.now() - started >= within) return false
    await new Promise((r) => setTimeout(r, wait))
  }
}
