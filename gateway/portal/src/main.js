import { createApp } from 'vue'
import App from './App.vue'
import { router } from './router.js'
import { i18n } from './i18n.js'
import { whenSessionExpires } from './api.js'
import './style.css'

whenSessionExpires(() => router.push({ name: 'login', query: { next: router.currentRoute.value.fullPath } }))
createApp(App).use(i18n).use(router).mount('#app')

// The app keeps opening offline (public/sw.js); browsers allow service workers on https and on localhost.
if ('serviceWorker' in navigator) navigator.serviceWorker.register('/portal/sw.js', { scope: '/portal/' }).catch(() => {})
