/**
 * Load and soak: the long-running proofs that ws-duplex keeps its promises at volume.
 *
 *   npm run soak            1,000 concurrent connections x 1 MiB both ways; 10,000 cycles
 *   node --import tsx --expose-gc test/soak/run.ts --quick
 *                           the reduced form CI runs (100 x 256 KiB; 1,000 cycles); npm run soak
 *                           would hand --quick to its last command (mocha), not to this one
 *
 * Every byte is verified by SHA-256; every connection must close cleanly; after the cycles,
 * open handles, listeners and timers must be back at the baseline and RSS within 10%.
 * Results go to test/soak/results/<latest|quick>.json. Only 127.0.0.1 is used; every phase is
 * bounded in count and time.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { connect, createServer, type WsDuplex, type WsDuplexServer } from '../../lib/index.js'

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    connections: { type: 'string' },
    bytes: { type: 'string' },
    cycles: { type: 'string' }
  }
})
const quick = values.quick === true
const CONNECTIONS = Number(values.connections ?? (quick ? 100 : 1000))
const BYTES = Number(values.bytes ?? (quick ? 256 * 1024 : 1024 * 1024))
const CYCLES = Number(values.cycles ?? (quick ? 1000 : 10_000))
const PHASE_LIMIT_MS = quick ? 120_000 : 900_000
/**
 * The load phase's clients close while their last bytes may still sit in the kernel's socket
 * buffers (a few MiB each way on loopback), and the close frame waits behind them. With 1,000
 * saturated connections the server drains ~1,000 MiB at ~150 MiB/s, so an honest close can take
 * ~7 s, longer than the 5 s default, which is sized for a peer that stops answering. Raise it
 * here as a user running this many saturated connections should (README, `closeTimeout`).
 */
const LOAD_CLOSE_TIMEOUT_MS = 30_000
const WARMUP_CYCLES = 1000

interface Outcome {
  sentHash: string
  receivedHash: string
  bytes: number
  clean: boolean
  /** The stream's error code when it did not end cleanly. */
  error?: string
}

/**
 * Payloads come from a small pool of random buffers (a fresh 1 MiB per connection and side
 * would make the test, not the library, the largest user of memory); hashes still tell every
 * pool entry apart, so a lost, cut or corrupted stream cannot match.
 */
const payloadPool = new Map<number, Buffer[]>()
let payloadTurn = 0
function payload(bytes: number): Buffer {
  let pool = payloadPool.get(bytes)
  if (pool === undefined) {
    pool = Array.from({ length: 16 }, () => randomBytes(bytes))
    payloadPool.set(bytes, pool)
  }
  return pool[payloadTurn++ % pool.length] as Buffer
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : String(error)
}

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with --expose-gc (npm run soak does)')

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Reads exactly `length` bytes, hashing them. */
function readExactly(duplex: WsDuplex, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    let got = 0
    const onData = (chunk: Buffer): void => {
      hash.update(chunk)
      got += chunk.length
      if (got >= length) {
        duplex.off('data', onData)
        duplex.off('error', reject)
        resolve(hash.digest('hex'))
      }
    }
    duplex.on('data', onData)
    duplex.on('error', reject)
  })
}

function writeAll(duplex: WsDuplex, data: Buffer, chunkSize = 64 * 1024): Promise<void> {
  return new Promise((resolve, reject) => {
    let offset = 0
    const pump = (): void => {
      while (offset < data.length) {
        const chunk = data.subarray(offset, offset + chunkSize)
        offset += chunk.length
        if (!duplex.write(chunk)) {
          duplex.once('drain', pump)
          return
        }
      }
      resolve()
    }
    duplex.once('error', reject)
    pump()
  })
}

/** Server side of one exchange: send our bytes, read theirs, and end cleanly after their close. */
function serve(duplex: WsDuplex, bytes: number, results: Outcome[]): void {
  const data = payload(bytes)
  const sentHash = sha256(data)
  let error: string | undefined
  duplex.on('error', (e) => (error = codeOf(e)))
  void Promise.all([readExactly(duplex, bytes), writeAll(duplex, data)]).then(
    ([receivedHash]) =>
      duplex.events.once('close', (info) =>
        results.push({ sentHash, receivedHash, bytes, clean: info.wasClean, error })
      ),
    (e: unknown) =>
      results.push({ sentHash, receivedHash: 'failed', bytes, clean: false, error: codeOf(e) })
  )
}

/** Client side: send, read everything the server sends, then close (no half-close in WebSocket). */
async function transfer(duplex: WsDuplex, bytes: number): Promise<Outcome> {
  const data = payload(bytes)
  let error: string | undefined
  duplex.on('error', (e) => (error = codeOf(e)))
  const [receivedHash] = await Promise.all([readExactly(duplex, bytes), writeAll(duplex, data)])
  const info = await duplex.close()
  return { sentHash: sha256(data), receivedHash, bytes, clean: info.wasClean, error }
}

async function exchange(url: string, bytes: number): Promise<Outcome> {
  return transfer(await connect(url), bytes)
}

/**
 * Opens `count` connections, at most `parallel` handshakes at a time: a burst of 1,000 SYNs
 * overflows the listen backlog (511) and turns the test into one of SYN retries.
 */
async function openMany(url: string, count: number, parallel = 100): Promise<WsDuplex[]> {
  const opened: WsDuplex[] = []
  for (let start = 0; start < count; start += parallel) {
    const batch = Math.min(parallel, count - start)
    const open = (): Promise<WsDuplex> => connect(url, { closeTimeout: LOAD_CLOSE_TIMEOUT_MS })
    opened.push(...(await Promise.all(Array.from({ length: batch }, open))))
  }
  return opened
}

async function startServer(
  bytes: number,
  results: Outcome[]
): Promise<{ server: WsDuplexServer; url: string }> {
  const server = await createServer({ port: 0, host: '127.0.0.1' }, (duplex) =>
    serve(duplex, bytes, results)
  )
  return { server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

function bounded<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    work,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what} took over ${PHASE_LIMIT_MS} ms`)),
        PHASE_LIMIT_MS
      )
    })
  ]).finally(() => clearTimeout(timer))
}

/** Every client's bytes arrived at the server and every server's bytes at the client, by hash. */
function verify(
  clients: Outcome[],
  servers: Outcome[]
): { lost: number; corrupted: number; unclean: number; errors: Record<string, number> } {
  const serverSent = new Set(servers.map((s) => s.sentHash))
  const serverReceived = new Set(servers.map((s) => s.receivedHash))
  let corrupted = 0
  for (const client of clients) {
    if (!serverSent.has(client.receivedHash)) corrupted++
    if (!serverReceived.has(client.sentHash)) corrupted++
  }
  const lost = Math.max(0, clients.length - servers.length)
  const unclean = clients.filter((c) => !c.clean).length + servers.filter((s) => !s.clean).length
  const errors: Record<string, number> = {}
  for (const [side, outcomes] of [
    ['client', clients],
    ['server', servers]
  ] as const) {
    for (const { error } of outcomes) {
      if (error !== undefined) errors[`${side} ${error}`] = (errors[`${side} ${error}`] ?? 0) + 1
    }
  }
  return { lost, corrupted, unclean, errors }
}

async function loadPhase(): Promise<Record<string, number | string>> {
  const serverResults: Outcome[] = []
  const { server, url } = await startServer(BYTES, serverResults)
  const duplexes = await bounded(openMany(url, CONNECTIONS), 'opening the connections')
  // Every connection is open at once; now all of them move their bytes concurrently.
  const started = performance.now()
  const clients = await bounded(
    Promise.all(duplexes.map((duplex) => transfer(duplex, BYTES))),
    'the load phase'
  )
  const seconds = (performance.now() - started) / 1000
  await server.close()
  const { lost, corrupted, unclean, errors } = verify(clients, serverResults)
  return {
    connections: CONNECTIONS,
    bytesEachWay: BYTES,
    seconds: Number(seconds.toFixed(2)),
    aggregateMiBps: Number(((2 * CONNECTIONS * BYTES) / 2 ** 20 / seconds).toFixed(1)),
    lost,
    corrupted,
    unclean,
    errors: JSON.stringify(errors)
  }
}

function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

async function cyclesPhase(): Promise<Record<string, number | string>> {
  const serverResults: Outcome[] = []
  const { server, url } = await startServer(4096, serverResults)
  const cycle = async (): Promise<Outcome> => exchange(url, 4096)
  // Warm up (JIT, buffer pools, allocator arenas: a one-off step of ~20 MiB), then take the
  // baseline; a leak shows as growth proportional to the cycles after it.
  for (let i = 0; i < WARMUP_CYCLES; i++) await cycle()
  gc?.()
  const rssBefore = process.memoryUsage().rss
  const heapBefore = process.memoryUsage().heapUsed
  const resourcesBefore = resourceCounts()
  const listenersBefore = server.listenerCount('connection')
  const started = performance.now()
  let unclean = 0
  await bounded(
    (async () => {
      for (let i = 0; i < CYCLES; i++) if (!(await cycle()).clean) unclean++
    })(),
    'the cycles phase'
  )
  const seconds = (performance.now() - started) / 1000
  // Let the last server-side closes land: wait for the server's live set to empty (bounded).
  await bounded(
    new Promise<void>((resolve) => {
      const check = (): void =>
        server.connections.size === 0 ? resolve() : void setTimeout(check, 10)
      check()
    }),
    'the last connections to close'
  )
  gc?.()
  const rssAfter = process.memoryUsage().rss
  const heapAfter = process.memoryUsage().heapUsed
  const resourcesAfter = resourceCounts()
  const grown = Object.entries(resourcesAfter)
    .filter(([name, count]) => count > (resourcesBefore[name] ?? 0))
    .map(([name, count]) => `${name}+${count - (resourcesBefore[name] ?? 0)}`)
  const listenersAfter = server.listenerCount('connection')
  await server.close()
  return {
    cycles: CYCLES,
    seconds: Number(seconds.toFixed(2)),
    cyclesPerSecond: Math.round(CYCLES / seconds),
    unclean,
    rssBeforeMiB: Number((rssBefore / 2 ** 20).toFixed(1)),
    rssAfterMiB: Number((rssAfter / 2 ** 20).toFixed(1)),
    rssGrowthPercent: Number((((rssAfter - rssBefore) / rssBefore) * 100).toFixed(1)),
    heapBeforeMiB: Number((heapBefore / 2 ** 20).toFixed(1)),
    heapAfterMiB: Number((heapAfter / 2 ** 20).toFixed(1)),
    resourcesGrown: grown.join(' ') || 'none',
    listenersGrown: listenersAfter - listenersBefore
  }
}

const load = await loadPhase()
console.log('load  ', JSON.stringify(load))
const cycles = await cyclesPhase()
console.log('cycles', JSON.stringify(cycles))

const failures: string[] = []
if (load.lost !== 0 || load.corrupted !== 0)
  failures.push(`load: ${load.lost} lost, ${load.corrupted} corrupted`)
if (load.unclean !== 0) failures.push(`load: ${load.unclean} unclean closes`)
if (cycles.unclean !== 0) failures.push(`cycles: ${cycles.unclean} unclean closes`)
if ((cycles.rssGrowthPercent as number) >= 10)
  failures.push(`cycles: RSS grew ${cycles.rssGrowthPercent}%`)
if (cycles.resourcesGrown !== 'none')
  failures.push(`cycles: resources grew: ${cycles.resourcesGrown}`)
if (cycles.listenersGrown !== 0) failures.push(`cycles: listeners grew by ${cycles.listenersGrown}`)

const report = {
  date: new Date().toISOString(),
  node: process.version,
  mode: quick ? 'quick' : 'full',
  load,
  cycles,
  failures
}
const dir = new URL('./results/', import.meta.url)
await mkdir(dir, { recursive: true })
await writeFile(
  new URL(quick ? 'quick.json' : 'latest.json', dir),
  JSON.stringify(report, null, 2) + '\n'
)
console.log(
  failures.length === 0 ? 'soak: all promises kept' : `soak FAILED:\n- ${failures.join('\n- ')}`
)
process.exitCode = failures.length === 0 ? 0 : 1
