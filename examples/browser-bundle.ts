/**
 * The browser example end to end on loopback: bundles examples/browser/app.ts with esbuild (the
 * `browser` export condition picks ws-duplex's browser build: no `ws`, no `node:` modules), serves
 * it next to a ws-duplex echo server, and opens it in headless Chromium when one is installed
 * (`apt-get install chromium`; otherwise it prints the URL to open yourself).
 * Run: npx tsx examples/browser-bundle.ts
 */
import { existsSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'
import { chromium } from 'playwright-core'
import { createServer } from 'ws-duplex'

const bundle = await build({
  entryPoints: [fileURLToPath(new URL('browser/app.ts', import.meta.url))],
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  write: false,
  metafile: true
})
const script = bundle.outputFiles[0]?.contents ?? new Uint8Array()
const fromPackage = Object.keys(bundle.metafile.inputs).filter((input) => input.startsWith('dist/'))
console.log(
  `bundled: ${script.length} bytes minified, ${gzipSync(script).length} gzipped, ` +
    `ws-duplex modules: ${fromPackage.length} (${fromPackage.includes('dist/browser.js') ? 'browser build' : 'NOT the browser build'})`
)

// One HTTP server: the page, the script, and the WebSocket upgrade on /ws.
const http = createHttpServer((request, response) => {
  if (request.url === '/app.js') {
    response.writeHead(200, { 'content-type': 'text/javascript' }).end(script)
    return
  }
  response
    .writeHead(200, { 'content-type': 'text/html' })
    .end(
      '<!doctype html><title>ws-duplex</title><body>…<script type="module" src="/app.js"></script>'
    )
})
const wsServer = await createServer({ server: http, path: '/ws' }, (duplex) => {
  duplex.on('error', (error) => console.error('server side:', error))
  duplex.pipe(duplex)
})
http.listen(0, '127.0.0.1')
await new Promise((resolve) => http.once('listening', resolve))
const pageUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
if (!existsSync(chromiumPath)) {
  console.log(`no Chromium at ${chromiumPath}: open ${pageUrl} in a browser (Ctrl-C to stop)`)
} else {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] })
  const page = await browser.newPage()
  page.on('pageerror', (error) => console.error('page error:', error.message))
  await page.goto(pageUrl)
  await page.waitForFunction("document.body.textContent.startsWith('replies')", undefined, {
    timeout: 10_000
  })
  const text = (await page.textContent('body')) ?? ''
  console.log(`the page says: ${text}`)
  await browser.close()
  await wsServer.close()
  http.close()
  if (!text.includes('replies: hello from the browser') || !text.includes('"wasClean":true')) {
    process.exitCode = 1
  }
}
