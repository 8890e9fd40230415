// WsStream in real headless Chromium (Debian's chromium, driven by playwright-core) against
// ws-duplex and ws servers in this process, all on 127.0.0.1. The page is test/browser/page.ts,
// bundled here with esbuild from the built package (run `npm run build` first; `npm test` does).
import { existsSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { build } from 'esbuild'
import { chromium, type Browser, type Page } from 'playwright-core'
import { WebSocketServer, type WebSocket } from 'ws'
import { createServer, type WsDuplexServer } from '../lib/index.js'
import type { Api } from './browser/page.js'
import { onceWithin } from './helpers/wait.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** Runs `api[name](...args)` in the page. */
function call<K extends keyof Api>(
  page: Page,
  name: K,
  ...args: Parameters<Api[K]>
): Promise<Awaited<ReturnType<Api[K]>>> {
  return page.evaluate(
    ([fn, fnArgs]) => {
      const api = (
        globalThis as unknown as { wsdTest: Record<string, (...a: unknown[]) => unknown> }
      ).wsdTest
      return api[fn]?.(...fnArgs)
    },
    [name, args] as [string, unknown[]]
  ) as Promise<Awaited<ReturnType<Api[K]>>>
}

describe('WsStream in headless Chromium', function () {
  this.timeout(30_000)
  let browser: Browser | undefined
  let page: Page
  let http: Server
  let echo: WsDuplexServer
  let scripted: WebSocketServer
  let echoUrl: string
  let scriptedUrl: string
  /** The close code each scripted connection received, by path. */
  const closeCodes = new Map<string, Promise<number>>()

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      // CI installs it (.ci/run); elsewhere say how to get it rather than fail obscurely.
      if (process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}`)
      console.warn(
        `  skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or CHROMIUM_PATH)`
      )
      this.skip()
    }
    const bundle = await build({
      entryPoints: [fileURLToPath(new URL('browser/page.ts', import.meta.url))],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      write: false,
      logLevel: 'silent'
    })
    const script = bundle.outputFiles[0]?.text ?? ''
    http = createHttpServer((request, response) => {
      if (request.url === '/page.js') {
        response.writeHead(200, { 'content-type': 'text/javascript' }).end(script)
      } else {
        response
          .writeHead(200, { 'content-type': 'text/html' })
          .end('<!doctype html><script type="module" src="/page.js"></script>')
      }
    })
    http.listen(0, '127.0.0.1')
    await onceWithin(http, 'listening')

    echo = await createServer({ port: 0, host: '127.0.0.1' }, (duplex) => {
      duplex.on('error', () => {})
      duplex.pipe(duplex)
    })
    echoUrl = `ws://127.0.0.1:${(echo.address() as AddressInfo).port}`

    // A plain ws server scripted by path, for what a ws-duplex server would never send.
    scripted = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await onceWithin(scripted, 'listening')
    scripted.on('connection', (socket: WebSocket, request) => {
      socket.on('error', () => {})
      const path = request.url ?? '/'
      closeCodes.set(path, new Promise((resolve) => socket.once('close', resolve)))
      if (path === '/text') {
        socket.send(Buffer.alloc(1000, 1))
        socket.send('not bytes')
      } else if (path === '/text-between') {
        socket.send(Buffer.alloc(1000, 1))
        socket.send('not bytes')
        socket.send(Buffer.alloc(1000, 1))
        socket.close(1000)
      } else if (path === '/1011') {
        socket.send(Buffer.alloc(10, 2))
        socket.close(1011, 'broken')
      } else if (path === '/1000') {
        socket.send(Buffer.alloc(10, 3))
        socket.close(1000)
      } else if (path === '/reset') {
        socket.send(Buffer.alloc(10, 4), () => socket.terminate())
      } else if (path === '/big') {
        socket.send(Buffer.alloc(2000, 5))
      } else if (path === '/flood') {
        for (let i = 0; i < 40; i++) socket.send(Buffer.alloc(16 * 1024, i))
      }
    })
    scriptedUrl = `ws://127.0.0.1:${(scripted.address() as AddressInfo).port}`

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']
    })
    page = await browser.newPage()
    await page.goto(`http://127.0.0.1:${(http.address() as AddressInfo).port}/`)
    await page.waitForFunction(() => 'wsdTest' in globalThis, undefined, { timeout: 10_000 })
  })

  after(async () => {
    await browser?.close()
    await echo?.close()
    for (const client of scripted?.clients ?? []) client.terminate()
    await new Promise((resolve) => (scripted ? scripted.close(resolve) : resolve(undefined)))
    await new Promise((resolve) => (http ? http.close(resolve) : resolve(undefined)))
  })

  it('carries bytes both ways in odd chunkings and closes cleanly with 1000', async () => {
    const result = await call(page, 'echo', echoUrl, 1_000_003, [1, 13, 4096, 65_537, 7])
    expect(result.received).to.equal(result.sent)
    expect(result.closeInfo).to.deep.equal({ code: 1000, reason: '', wasClean: true })
  })

  it('carries it-length-prefixed messages through it-pipe', async () => {
    const result = await call(page, 'lengthPrefixed', echoUrl, 2000)
    expect(result.received).to.equal(result.sent)
    expect(result.closeInfo?.wasClean).to.equal(true)
  })

  it('a text frame: the bytes before it, then ERR_TEXT_FRAME, and 4003 on the wire', async () => {
    const ending = await call(page, 'readToEnd', `${scriptedUrl}/text`)
    expect(ending.bytes).to.equal(1000)
    expect(ending.error).to.deep.equal({ code: 'ERR_TEXT_FRAME', closeCode: 4003 })
    expect(await closeCodes.get('/text')).to.equal(4003)
  })

  it("text: 'ignore' drops it with a warning and goes on", async () => {
    const ending = await call(page, 'readToEnd', `${scriptedUrl}/text-between`, { text: 'ignore' })
    expect(ending).to.deep.equal({
      bytes: 2000,
      error: null,
      closeInfo: { code: 1000, reason: '', wasClean: true }
    })
  })

  it('a clean close from the peer is a clean end of the stream', async () => {
    const ending = await call(page, 'readToEnd', `${scriptedUrl}/1000`)
    expect(ending).to.deep.equal({
      bytes: 10,
      error: null,
      closeInfo: { code: 1000, reason: '', wasClean: true }
    })
  })

  it('a peer closing with 1011 is an error after the bytes before it, never an EOF', async () => {
    const ending = await call(page, 'readToEnd', `${scriptedUrl}/1011`)
    expect(ending.bytes).to.equal(10)
    expect(ending.error).to.deep.equal({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
  })

  it('a dropped TCP connection is ERR_ABNORMAL_CLOSURE', async () => {
    const ending = await call(page, 'readToEnd', `${scriptedUrl}/reset`)
    expect(ending.bytes).to.equal(10)
    expect(ending.error?.code).to.equal('ERR_ABNORMAL_CLOSURE')
  })

  it('a message over maxPayload is ERR_PAYLOAD_TOO_LARGE, 4009 on the wire', async () => {
    const ending = await call(page, 'readToEnd', `${scriptedUrl}/big`, { maxPayload: 1000 })
    expect(ending.error).to.deep.equal({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 4009 })
    expect(await closeCodes.get('/big')).to.equal(4009)
  })

  it('destroy(error) gives the peer 4011, not 1006', async () => {
    await call(page, 'destroyWithError', `${scriptedUrl}/record`)
    expect(await closeCodes.get('/record')).to.equal(4011)
  })

  it('reports ping and keepAlive as unsupported', async () => {
    expect(await call(page, 'unsupported', echoUrl)).to.deep.equal({
      warning: 'ERR_UNSUPPORTED',
      ping: 'ERR_UNSUPPORTED'
    })
  })

  it('a refused connection rejects with ERR_CONNECT_FAILED', async () => {
    const http2 = createHttpServer()
    http2.listen(0, '127.0.0.1')
    await onceWithin(http2, 'listening')
    const { port } = http2.address() as AddressInfo
    await new Promise((resolve) => http2.close(resolve))
    const error = await call(page, 'refused', `ws://127.0.0.1:${port}`)
    expect(error?.code).to.equal('ERR_CONNECT_FAILED')
  })
})
