// The portal's build: Vue single-file components, Element Plus components and their styles imported only
// where a page uses them (unplugin-vue-components), ECharts from its modular core, every page its own chunk.
// The output (dist/) is served by the gateway under /portal/ (gateway/routes_portal.py); nothing is fetched
// from a CDN at run time.
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'

export default defineConfig({
  base: '/portal/',
  plugins: [
    vue(),
    Components({ resolvers: [ElementPlusResolver({ importStyle: 'css' })], dts: false }),
  ],
  define: {
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
    __INTLIFY_PROD_DEVTOOLS__: 'false',
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 700,
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev`: the gateway of `make up` answers the API.
    proxy: { '/api': `http://127.0.0.1:${process.env.HONGLING_GATEWAY_PORT || 17080}` },
  },
})
