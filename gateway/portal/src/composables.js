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
