// The portal's build: Vue single-file components, Element Plus components and their styles imported only
// where a page uses them (unplugin-vue-components), ECharts from its modular core, every page its own chunk.
// The output (dist/) is served by the gateway under /portal/ (gateway/routes_portal.py); nothing is fetched
// from a CDN at run time.
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'

// The service worker (sw.js) with this build's files to keep for offline use and an id naming its cache.
function serviceWorker() {
  return {
    name: 'hongling-service-worker',
    generateBundle(_options, bundle) {
      const assets = Object.keys(bundle).filter((f) => f.startsWith('assets/')).sort()
      const build = createHash('sha256').update(assets.join('\n')).digest('hex').slice(0, 12)
      const source = readFileSync(new URL('./sw.js', import.meta.url), 'utf8')
        .replace('__BUILD__', build)
        .replace('__ASSETS__', JSON.stringify(assets))
      this.emitFile({ type: 'asset', fileName: 'sw.js', source })
    },
  }
}

// Each script, style and image of the build also gzipped beside it (name.gz), once, at build time: the gateway
// sends that to a browser that accepts gzip, so no request spends CPU compressing.
function precompress() {
  return {
    name: 'hongling-precompress',
    writeBundle(options, bundle) {
      for (const name of Object.keys(bundle)) {
        if (!/\.(js|css|svg|json)$/.test(name)) continue
        const path = join(options.dir, name)
        writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }))
      }
    },
  }
}

export default defineConfig({
  base: '/portal/',
  plugins: [
    vue(),
    Components({ resolvers: [ElementPlusResolver({ importStyle: 'css' })], dts: false }),
    serviceWorker(),
    precompress(),
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
