/**
 * Where the round-trip tail comes from: the `rtt` workload's 20,000 sequential 32-byte round
 * trips, with `ws` used directly, `ws`'s `createWebSocketStream()` (`cws`, the thinnest Node
 * Duplex over ws) and ws-duplex's Duplex face, reported apart for the first
 * 1,000 (while V8 still optimises the path) and the rest, with the minor and major collections
 * of each process. `--no-opt` runs both processes without V8's optimising compiler: if the
 * tail of the first 1,000 goes with it, what made it was compiling, not the path itself.
 *
 * Every trial is a fresh pair of processes (server and client children of this one), as in
 * `run.ts`; trials are interleaved. Every echo is checked byte for byte.
 *
 *   npm run build && node --import tsx bench/rtt-warmup.ts [--runs=N] [--no-opt] [--quick]
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import { WebSocket, WebSocketServer, createWebSocketStream } from 'ws'
import { tcpPort } from './adapters.js'
import { loadWsDuplex } from './wsd.js'

const IMPLS = ['ws', 'cws', 'wsd'] as const
type ImplName = (typeof IMPLS)[number]
/** `--quick` is CI's seconds-long version, so the probe cannot rot. */
const QUICK = process.argv.includes('--quick')
const ROUND_TRIPS = QUICK ? 2000 : 20_000
const WARM_UP = QUICK ? 100 : 1000
const SIZE = 32

interface Collections {
  minor: number
  major: number
}

interface ClientReport {
  latenciesUs: number[]
  collections: Collections
}

/** Counts this process's garbage collections from now on. */
function countCollections(): { read: () => Collections; reset: () => void } {
  const counts: Collections = { minor: 0, major: 0 }
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as { detail?: { kind?: number } }).detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) counts.minor++
      else counts.major++
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  return {
    read: () => ({ ...counts }),
    reset: () => {
      counts.minor = 0
      counts.major = 0
    }
  }
}

/** Child: an echo server; answers 'report' with its collections since 'reset'. */
async function serverProcess(impl: ImplName): Promise<void> {
  const gc = countCollections()
  let port: number
  if (impl === 'ws') {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
    await once(wss, 'listening')
    wss.on('connection', (ws) => ws.on('message', (data: Buffer) => ws.send(data)))
    port = tcpPort(wss.address())
  } else if (impl === 'cws') {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
    await once(wss, 'listening')
    wss.on('connection', (ws) => {
      const d = createWebSocketStream(ws)
      d.on('error', () => undefined)
      d.pipe(d, { end: false })
    })
    port = tcpPort(wss.address())
  } else {
    const { createServer } = await loadWsDuplex()
    const server = await createServer({ host: '127.0.0.1', port: 0 }, (d) => {
      d.on('error', () => undefined)
      d.pipe(d, { end: false })
    })
    port = tcpPort(server.address())
  }
  process.on('message', (m) => {
    if (m === 'reset') gc.reset()
    else if (m === 'report') process.send?.(gc.read())
  })
  process.send?.(port)
}

/** Child: the timed round trips against `port`. */
async function clientProcess(impl: ImplName, port: number): Promise<void> {
  let wake: () => void = () => undefined
  let echoed: Buffer = Buffer.alloc(0)
  const onEcho = (chunk: Buffer): void => {
    echoed = echoed.length === 0 ? chunk : Buffer.concat([echoed, chunk])
    if (echoed.length >= SIZE) wake()
  }
  let send: (message: Buffer) => void
  let close: () => void
  if (impl === 'ws') {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    await once(ws, 'open')
    ws.on('message', onEcho)
    send = (message) => ws.send(message)
    close = () => ws.close(1000)
  } else if (impl === 'cws') {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    await once(ws, 'open')
    const d = createWebSocketStream(ws)
    d.on('error', () => undefined)
    d.on('data', onEcho)
    send = (message) => d.write(message)
    close = () => d.end()
  } else {
    const { connect } = await loadWsDuplex()
    const d = await connect(`ws://127.0.0.1:${port}`)
    d.on('data', onEcho)
    send = (message) => d.write(message)
    close = () => d.end()
  }
  const gc = countCollections()
  const latenciesUs: number[] = []
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const message = Buffer.alloc(SIZE, i & 0xff)
    echoed = Buffer.alloc(0)
    const answered = new Promise<void>((resolve) => (wake = resolve))
    const start = process.hrtime.bigint()
    send(message)
    await answered
    latenciesUs.push(Number(process.hrtime.bigint() - start) / 1000)
    if (!echoed.equals(message)) throw new Error(`round trip ${i}: the echo differs`)
  }
  const report: ClientReport = { latenciesUs, collections: gc.read() }
  close()
  process.send?.(report)
}

function child(args: string[], noOpt: boolean): ChildProcess {
  return fork(new URL(import.meta.url).pathname, QUICK ? [...args, '--quick'] : args, {
    execArgv: [...process.execArgv, ...(noOpt ? ['--no-opt'] : [])]
  })
}

/** The child's next message; rejects if it exits first (a failed echo check, say). */
function message<T>(from: ChildProcess): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onExit = (code: number | null): void => {
      reject(new Error(`a child exited with ${code} before it reported`))
    }
    from.once('exit', onExit)
    from.once('message', (value) => {
      from.off('exit', onExit)
      resolve(value as T)
    })
  })
}

interface TrialResult {
  impl: ImplName
  client: ClientReport
  server: Collections
}

async function trial(impl: ImplName, noOpt: boolean): Promise<TrialResult> {
  const server = child(['server', impl], noOpt)
  let client: ChildProcess | undefined
  try {
    const port = await message<number>(server)
    server.send('reset')
    client = child(['client', impl, String(port)], noOpt)
    const report = await message<ClientReport>(client)
    server.send('report')
    const collections = await message<Collections>(server)
    return { impl, client: report, server: collections }
  } finally {
    client?.kill()
    server.kill()
  }
}

function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}

function line(r: TrialResult): string {
  const all = r.client.latenciesUs
  const p99 = percentile(all, 0.99)
  const first = all.slice(0, WARM_UP)
  const rest = all.slice(WARM_UP)
  // How much of the slowest 1 % the warm-up accounts for.
  const slowEarly = first.filter((v) => v > p99).length
  const slow = all.filter((v) => v > p99).length
  const us = (v: number): string => v.toFixed(0).padStart(4)
  return (
    `${r.impl.padEnd(4)} p50 ${us(percentile(all, 0.5))} p99 ${us(p99)} µs;` +
    ` of the ${slow} above p99, ${String(slowEarly).padStart(3)} in the first ${WARM_UP};` +
    ` first ${WARM_UP} p90 ${us(percentile(first, 0.9))}, rest p99 ${us(percentile(rest, 0.99))} µs;` +
    ` collections (minor/major) client ${r.client.collections.minor}/${r.client.collections.major},` +
    ` server ${r.server.minor}/${r.server.major}`
  )
}

async function main(): Promise<void> {
  const [role, impl, port] = process.argv.slice(2)
  if (role === 'server') return serverProcess(impl as ImplName)
  if (role === 'client') return clientProcess(impl as ImplName, Number(port))
  const runsArg = process.argv.find((a) => a.startsWith('--runs='))
  const runs = runsArg === undefined ? 3 : Number(runsArg.slice('--runs='.length))
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs wants a positive integer')
  const noOpt = process.argv.includes('--no-opt')
  console.log(
    `${ROUND_TRIPS} round trips of ${SIZE} B per trial${noOpt ? ', V8 flag --no-opt' : ''}`
  )
  for (let run = 0; run < runs; run++) {
    for (const name of IMPLS) console.log(line(await trial(name, noOpt)))
  }
}

await main()
