/**
 * Workloads: what is sent, how it is checked, and what is measured.
 *
 * The client always writes and the server always reads (and echoes, for rtt). Every byte is
 * verified: the writer sends slices of a fixed pseudo-random pattern, so the stream of any length
 * is known in advance, and the reader keeps a byte count and a running CRC-32 that must both match.
 * A run that loses, adds or corrupts data is a failure, never a number.
 *
 * Times cross process boundaries: `nowUs()` is CLOCK_MONOTONIC (process.hrtime), the same clock in
 * every process of the machine, so the client can stamp the start and the server the end.
 */
import { GCProfiler } from 'node:v8'
import { crc32 } from 'node:zlib'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Conn, Impl, OnChunk } from './types.js'

export const KiB = 1024
export const MiB = 1024 * KiB

export interface StreamWorkload {
  kind: 'stream'
  name: string
  title: string
  /** Concurrent connections, each carrying its own copy of the stream. */
  conns: number
  bytesPerConn: number
  writeSize: number
  /** Reader speed limit in bytes per second (the slow-reader workload). */
  readRate?: number
  timeoutS: number
}

export interface FramedWorkload {
  kind: 'framed'
  name: string
  title: string
  messages: number
  messageSize: number
  timeoutS: number
}

export interface RttWorkload {
  kind: 'rtt'
  name: string
  title: string
  roundTrips: number
  size: number
  timeoutS: number
}

export interface IdleWorkload {
  kind: 'idle'
  name: string
  title: string
  conns: number
  timeoutS: number
}

export type Workload = StreamWorkload | FramedWorkload | RttWorkload | IdleWorkload

function size(n: number): string {
  const unit = (u: number, name: string): string =>
    `${n % u === 0 ? n / u : (n / u).toFixed(1)} ${name}`
  return n >= MiB ? unit(MiB, 'MiB') : n >= KiB ? unit(KiB, 'KiB') : `${n} B`
}

function bulk(name: string, bytes: number, timeoutS: number): StreamWorkload {
  const writeSize = 64 * KiB
  const title = `${size(bytes)} in ${size(writeSize)} writes`
  return { kind: 'stream', name, title, conns: 1, bytesPerConn: bytes, writeSize, timeoutS }
}

function fanout(conns: number, total: number, timeoutS: number): StreamWorkload {
  const bytesPerConn = Math.floor(total / conns)
  return {
    kind: 'stream',
    name: `fanout-${conns}`,
    title: `${size(conns * bytesPerConn)} over ${conns} concurrent streams`,
    conns,
    bytesPerConn,
    writeSize: 64 * KiB,
    timeoutS
  }
}

/** Every workload, in report order; `smoke` is the seconds-long CI version. */
export function workloads(smoke: boolean): Workload[] {
  const s = smoke
  const t = (full: number): number => (s ? 30 : full)
  const small = s ? 256 * KiB : 32 * MiB
  const messages = s ? 2000 : 200_000
  const roundTrips = s ? 500 : 20_000
  const idle = s ? 20 : 2000
  const slow = s ? 8 * MiB : 512 * MiB
  const fanTotal = s ? 4 * MiB : 128 * MiB
  const list: Workload[] = [
    bulk('bulk-1m', s ? 64 * KiB : MiB, t(60)),
    bulk('bulk-16m', s ? MiB : 16 * MiB, t(60)),
    bulk('bulk', s ? 4 * MiB : 256 * MiB, t(120)),
    // Long enough that the first few thousand frames, run before V8 has optimised the path,
    // are a small part of it: the steady state next to the 256 MiB figure.
    bulk('bulk-1g', s ? 8 * MiB : 1024 * MiB, t(240)),
    {
      kind: 'stream',
      name: 'small',
      title: `${size(small)} in 64 B writes`,
      conns: 1,
      bytesPerConn: small,
      writeSize: 64,
      timeoutS: t(180)
    },
    {
      kind: 'framed',
      name: 'framed',
      title: `${messages} messages of 100 B, length-prefixed`,
      messages,
      messageSize: 100,
      timeoutS: t(180)
    },
    {
      kind: 'rtt',
      name: 'rtt',
      title: `${roundTrips} sequential 32 B round trips`,
      roundTrips,
      size: 32,
      timeoutS: t(120)
    },
    {
      kind: 'idle',
      name: 'idle',
      title: `${idle} open connections`,
      conns: idle,
      timeoutS: t(180)
    },
    {
      kind: 'stream',
      name: 'slow',
      title: `${size(slow)} to a reader limited to 64 MiB/s`,
      conns: 1,
      bytesPerConn: slow,
      writeSize: 64 * KiB,
      readRate: 64 * MiB,
      timeoutS: t(90)
    }
  ]
  for (const n of s ? [1, 10] : [1, 10, 100, 1000]) list.push(fanout(n, fanTotal, t(180)))
  return list
}

// ---------------------------------------------------------------------------------------------
// Data: a deterministic stream, cut into zero-copy slices of one shared, never-mutated buffer.

/** Pattern period: not a multiple of any write size, so chunk boundaries drift over the pattern. */
const PERIOD = MiB + 4093
const MAX_SLICE = 256 * KiB
let patternBuf: Buffer | undefined

function pattern(): Buffer {
  if (patternBuf !== undefined) return patternBuf
  const buf = Buffer.allocUnsafe(PERIOD + MAX_SLICE)
  let x = 0x9e3779b9
  for (let i = 0; i < PERIOD; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    buf[i] = x & 0xff
  }
  buf.copy(buf, PERIOD, 0, MAX_SLICE)
  patternBuf = buf
  return buf
}

/** The stream's bytes [offset, offset + length), length <= 256 KiB, as a view (no copy). */
export function slice(offset: number, length: number): Buffer {
  const p = offset % PERIOD
  return pattern().subarray(p, p + length)
}

/** The first `total` bytes of the stream in `writeSize` pieces. */
export function* streamChunks(total: number, writeSize: number): Generator<Buffer> {
  for (let off = 0; off < total; off += writeSize)
    yield slice(off, Math.min(writeSize, total - off))
}

/** The `framed` workload's messages: consecutive `messageSize`-byte slices of the stream. */
export function* framedMessages(w: FramedWorkload): Generator<Buffer> {
  for (let i = 0; i < w.messages; i++) yield slice(i * w.messageSize, w.messageSize)
}

/** CRC-32 of the first `total` bytes of the stream. */
export function streamCrc(total: number): number {
  let crc = 0
  for (let off = 0; off < total; off += MAX_SLICE) {
    crc = crc32(slice(off, Math.min(MAX_SLICE, total - off)), crc)
  }
  return crc
}

/** Byte count and running CRC-32 of what a reader received, checked against the stream. */
export class Verifier {
  bytes = 0
  crc = 0
  constructor(
    readonly expectedBytes: number,
    readonly expectedCrc: number
  ) {}

  push(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength
    this.crc = crc32(chunk, this.crc)
  }

  get complete(): boolean {
    return this.bytes >= this.expectedBytes
  }

  /** Undefined when everything arrived intact, else what went wrong. */
  problem(): string | undefined {
    if (this.bytes < this.expectedBytes) {
      return `lost data: received ${this.bytes} of ${this.expectedBytes} bytes`
    }
    if (this.bytes > this.expectedBytes) {
      return `extra data: received ${this.bytes} bytes, expected ${this.expectedBytes}`
    }
    if (this.crc !== this.expectedCrc)
      return `corrupted data: CRC-32 mismatch over ${this.bytes} bytes`
    return undefined
  }
}

/** A reader that "works" at `bytesPerSec`: after each chunk it is owed time, it sleeps it off. */
export class Pacer {
  private start = 0
  private bytes = 0
  constructor(private readonly bytesPerSec: number) {}

  consumed(n: number): Promise<void> | undefined {
    const now = performance.now()
    if (this.bytes === 0) this.start = now
    this.bytes += n
    const wait = this.start + (this.bytes / this.bytesPerSec) * 1000 - now
    // Let a few milliseconds of debt build up so that not every chunk costs a timer.
    return wait >= 4 ? sleep(wait) : undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by both sides.

/** Microseconds on the machine-wide monotonic clock (comparable across processes). */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

async function settleAndGc(): Promise<void> {
  await sleep(300)
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.()
    await sleep(20)
  }
}

/** Open `n` connections, at most `limit` handshakes in flight at once. */
async function openConns(impl: Impl, port: number, n: number, limit = 50): Promise<Conn[]> {
  const conns: Conn[] = new Array<Conn>(n)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      conns[i] = await impl.connect(port)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker))
  return conns
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve: (v: T) => void = () => undefined
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** What each side reports; the orchestrator turns a pair of them into metrics. */
export interface SideReport {
  ok: boolean
  error?: string
  values: Record<string, number>
}

/** Lets the two sides of the idle workload wait for each other (relayed by the orchestrator). */
export interface Peer {
  signal(name: string): void
  waitFor(name: string): Promise<void>
}

export interface Serving {
  port: number
  report: Promise<SideReport>
  progress(): string
  close(): Promise<void>
}

/** How long a connection may stay open after its last expected byte before that is a failure. */
const END_GRACE_MS = 10_000

function memory(): { rss: number; heap: number; external: number } {
  const m = process.memoryUsage()
  return { rss: m.rss, heap: m.heapUsed, external: m.external }
}

/** The idle workload measures memory once half of its connections are open, and at the end. */
function idleHalf(conns: number): number {
  return Math.floor(conns / 2)
}

/**
 * Memory per idle connection: the growth from half of the connections to all of them, divided
 * by the second half. Counting from zero would also charge the connections with one-time costs
 * that have nothing to do with how many there are: loading the implementation's modules,
 * compiling its code, V8 growing its young generation. Those are in `*FromZero`, for the record.
 */
function perConn(
  side: 'server' | 'client',
  base: ReturnType<typeof memory>,
  atHalf: ReturnType<typeof memory>,
  atEnd: ReturnType<typeof memory>,
  conns: number
): Record<string, number> {
  const second = conns - idleHalf(conns)
  return {
    [`${side}RssPerConn`]: (atEnd.rss - atHalf.rss) / second,
    [`${side}HeapPerConn`]: (atEnd.heap - atHalf.heap) / second,
    [`${side}ExternalPerConn`]: (atEnd.external - atHalf.external) / second,
    [`${side}RssPerConnFromZero`]: (atEnd.rss - base.rss) / conns,
    [`${side}HeapPerConnFromZero`]: (atEnd.heap - base.heap) / conns
  }
}

/**
 * What this process spent between `new Usage()` and `end()`: CPU time (user + system), minor page
 * faults (first touches of memory the kernel must hand over zeroed) and garbage collections. The
 * last two show what CPU time alone hides: a reader whose first collection comes late keeps
 * allocating fresh pages for the socket's buffers instead of reusing freed ones.
 */
class Usage {
  readonly #cpu = process.cpuUsage()
  readonly #faults = process.resourceUsage().minorPageFault
  readonly #gc = new GCProfiler()

  constructor() {
    this.#gc.start()
  }

  end(): { cpuMs: number; minorFaults: number; gcs: number } {
    const cpu = process.cpuUsage(this.#cpu)
    return {
      cpuMs: (cpu.user + cpu.system) / 1000,
      minorFaults: process.resourceUsage().minorPageFault - this.#faults,
      gcs: this.#gc.stop().statistics.length
    }
  }
}

function maxRssKiB(): number {
  return process.resourceUsage().maxRSS
}

// ---------------------------------------------------------------------------------------------
// Server side (the reader).

export async function serve(w: Workload, impl: Impl, peer: Peer): Promise<Serving> {
  const { promise: report, resolve: finish } = deferred<SideReport>()
  const problems: string[] = []
  let progress = (): string => 'no connection yet'
  let onConnection: (conn: Conn) => void

  if (w.kind === 'stream') {
    const expectedCrc = streamCrc(w.bytesPerConn)
    const verifiers: Verifier[] = []
    let completed = 0
    let finished = 0
    let tEnd = 0
    let usage: Usage | undefined
    let used: ReturnType<Usage['end']> | undefined
    const startRss = memory().rss
    progress = () =>
      `${verifiers.length}/${w.conns} connected, ${completed} complete, ${finished} ended; ` +
      `bytes: ${verifiers.reduce((a, v) => a + v.bytes, 0)} of ${w.conns * w.bytesPerConn}`
    const done = (): void => {
      if (++finished < w.conns) return
      finish({
        ok: problems.length === 0,
        error: problems.length > 0 ? problems.slice(0, 3).join('; ') : undefined,
        values: { tEnd, ...used, maxRssKiB: maxRssKiB(), startRssKiB: startRss / KiB }
      })
    }
    onConnection = (conn) => {
      const v = new Verifier(w.bytesPerConn, expectedCrc)
      verifiers.push(v)
      const pacer = w.readRate !== undefined ? new Pacer(w.readRate) : undefined
      let grace: NodeJS.Timeout | undefined
      const onChunk: OnChunk = (chunk) => {
        usage ??= new Usage()
        const wasComplete = v.complete
        v.push(chunk)
        if (v.complete && !wasComplete) {
          if (++completed === w.conns) {
            tEnd = nowUs()
            used = usage.end()
          }
          grace = setTimeout(() => {
            problems.push(`connection still open ${END_GRACE_MS} ms after its last byte`)
            grace = undefined
            done()
          }, END_GRACE_MS)
        }
        return pacer?.consumed(chunk.byteLength)
      }
      const settle = (err?: unknown): void => {
        if (v.complete && grace === undefined) return // already reported by the grace timer
        clearTimeout(grace)
        const problem = v.problem()
        if (problem !== undefined) {
          problems.push(err === undefined ? problem : `${problem} (${errorText(err)})`)
        }
        done()
      }
      conn.receive(onChunk).then(() => settle(), settle)
    }
  } else if (w.kind === 'framed') {
    const v = new Verifier(w.messages * w.messageSize, streamCrc(w.messages * w.messageSize))
    let count = 0
    let badLength = 0
    let tEnd = 0
    progress = () => `${count} of ${w.messages} messages`
    onConnection = (conn) => {
      let grace: NodeJS.Timeout | undefined
      const settle = (err?: unknown, late?: string): void => {
        if (grace === undefined && count >= w.messages && late === undefined) return // reported
        clearTimeout(grace)
        const problem =
          badLength > 0
            ? `${badLength} messages had the wrong length`
            : count !== w.messages
              ? `received ${count} of ${w.messages} messages`
              : v.problem()
        const error = [problem, late, err === undefined ? undefined : errorText(err)].filter(
          (e) => e !== undefined
        )
        finish({
          ok: error.length === 0,
          error: error.length > 0 ? error.join('; ') : undefined,
          values: { tEnd }
        })
      }
      conn
        .receiveMessages((message) => {
          if (message.byteLength !== w.messageSize) badLength++
          v.push(message)
          if (++count === w.messages) {
            tEnd = nowUs()
            grace = setTimeout(() => {
              grace = undefined
              settle(undefined, `connection still open ${END_GRACE_MS} ms after the last message`)
            }, END_GRACE_MS)
          }
        })
        .then(() => settle(), settle)
    }
  } else if (w.kind === 'rtt') {
    progress = () => 'echoing'
    onConnection = (conn) => {
      conn.echo().then(
        () => finish({ ok: true, values: {} }),
        (err: unknown) => finish({ ok: false, error: errorText(err), values: {} })
      )
    }
  } else {
    // idle: hold `conns` connections, measure memory, then check each one still carries data.
    const id = idPayloads(w.conns)
    const seen = new Uint8Array(w.conns)
    const half = idleHalf(w.conns)
    let accepted = 0
    let verified = 0
    let finished = 0
    await settleAndGc()
    const base = memory()
    let atHalf = base
    const values: Record<string, number> = {}
    progress = () => `${accepted}/${w.conns} accepted, ${verified} verified, ${finished} ended`
    const done = (): void => {
      if (++finished < w.conns) return
      if (verified !== w.conns) problems.push(`only ${verified} of ${w.conns} connections verified`)
      finish({
        ok: problems.length === 0,
        error: problems.length > 0 ? problems.slice(0, 3).join('; ') : undefined,
        values
      })
    }
    onConnection = (conn) => {
      const parts: Uint8Array[] = []
      let got = 0
      conn
        .receive((chunk) => {
          parts.push(chunk)
          got += chunk.byteLength
        })
        .then(
          () => {
            const n = got === 8 ? id.parse(Buffer.concat(parts)) : -1
            if (n < 0 || seen[n] === 1) problems.push(`bad id message (${got} bytes)`)
            else {
              seen[n] = 1
              verified++
            }
            done()
          },
          (err: unknown) => {
            problems.push(errorText(err))
            done()
          }
        )
      if (++accepted === half) {
        void settleAndGc().then(() => {
          atHalf = memory()
          peer.signal('server-half')
        })
      } else if (accepted === w.conns) {
        void settleAndGc().then(() => {
          Object.assign(values, perConn('server', base, atHalf, memory(), w.conns))
          peer.signal('server-measured')
        })
      }
    }
  }

  const listening = await impl.listen((conn) => onConnection(conn))
  return {
    port: listening.port,
    report,
    progress: () => progress(),
    close: () => listening.close()
  }
}

/** The 8-byte message each idle connection sends: its index and the index's complement. */
function idPayloads(n: number): { make(i: number): Buffer; parse(b: Buffer): number } {
  return {
    make(i) {
      const b = Buffer.alloc(8)
      b.writeUInt32LE(i, 0)
      b.writeUInt32LE(~i >>> 0, 4)
      return b
    },
    parse(b) {
      const i = b.readUInt32LE(0)
      return i < n && b.readUInt32LE(4) === ~i >>> 0 ? i : -1
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Client side (the writer).

export interface Driving {
  report: Promise<SideReport>
  progress(): string
}

export function drive(w: Workload, impl: Impl, port: number, peer: Peer): Driving {
  let progress = (): string => 'connecting'
  const run = async (): Promise<Record<string, number>> => {
    if (w.kind === 'stream') {
      const conns = await openConns(impl, port, w.conns)
      const startRss = memory().rss
      progress = () => `${w.conns} connected, sending`
      const usage = new Usage()
      const tStart = nowUs()
      await Promise.all(conns.map((c) => c.send(streamChunks(w.bytesPerConn, w.writeSize))))
      const tWriterDone = nowUs()
      const used = usage.end()
      progress = () => 'all sent'
      return { tStart, tWriterDone, ...used, maxRssKiB: maxRssKiB(), startRssKiB: startRss / KiB }
    }
    if (w.kind === 'framed') {
      const conn = await impl.connect(port)
      progress = () => 'sending'
      const tStart = nowUs()
      await conn.sendMessages(framedMessages(w))
      progress = () => 'all sent'
      return { tStart }
    }
    if (w.kind === 'rtt') return rtt(w, await impl.connect(port), (p) => (progress = p))
    // idle: the second half of the connections is the one measured (see perConn)
    await settleAndGc()
    const base = memory()
    const half = idleHalf(w.conns)
    const conns = await openConns(impl, port, half)
    progress = () => `${half} open, measuring`
    await settleAndGc()
    const atHalf = memory()
    // With a single connection there is no first half, and the server has nothing to signal.
    if (half > 0) await peer.waitFor('server-half')
    progress = () => `${half} open, opening the rest`
    conns.push(...(await openConns(impl, port, w.conns - half)))
    progress = () => `${w.conns} open, measuring`
    await settleAndGc()
    const m = memory()
    await peer.waitFor('server-measured')
    progress = () => `${w.conns} open, sending ids`
    const id = idPayloads(w.conns)
    await Promise.all(conns.map((c, i) => c.send([id.make(i)])))
    return perConn('client', base, atHalf, m, w.conns)
  }
  const report = run().then(
    (values): SideReport => ({ ok: true, values }),
    (err: unknown): SideReport => ({ ok: false, error: errorText(err), values: {} })
  )
  return { report, progress: () => progress() }
}

/** Round trips left out of `p99WarmUs` (a tenth of them in a shorter run). */
const WARM_UP_ROUND_TRIPS = 1000

async function rtt(
  w: RttWorkload,
  conn: Conn,
  setProgress: (p: () => string) => void
): Promise<Record<string, number>> {
  const latencies = new Float64Array(w.roundTrips)
  let expected = slice(0, 0)
  let got = 0
  let mismatches = 0
  let done = 0
  let wake: () => void = () => undefined
  setProgress(() => `${done} of ${w.roundTrips} round trips`)
  const receiving = conn.receive((chunk) => {
    if (!expected.subarray(got, got + chunk.byteLength).equals(chunk)) mismatches++
    got += chunk.byteLength
    if (got >= expected.byteLength) wake()
  })
  receiving.catch(() => undefined)
  const pings = async function* (): AsyncGenerator<Buffer> {
    for (let i = 0; i < w.roundTrips; i++) {
      expected = slice(i * w.size, w.size)
      got = 0
      const echoed = new Promise<void>((resolve) => (wake = resolve))
      const t0 = process.hrtime.bigint()
      yield expected
      await echoed
      latencies[i] = Number(process.hrtime.bigint() - t0) / 1000
      done++
    }
  }
  await conn.send(pings())
  if (mismatches > 0 || got !== w.size) {
    throw new Error(`echo mismatch: ${mismatches} bad chunks, last echo ${got} of ${w.size} bytes`)
  }
  // The first round trips run while V8 still compiles the code on the path: the longer the
  // path, the longer that lasts. p99 without them separates warm-up from the steady state.
  const warm = latencies.slice(Math.min(WARM_UP_ROUND_TRIPS, Math.floor(w.roundTrips / 10))).sort()
  latencies.sort()
  const at = (sorted: Float64Array, q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
  const mean = latencies.reduce((a, b) => a + b, 0) / w.roundTrips
  return {
    p50Us: at(latencies, 0.5),
    p99Us: at(latencies, 0.99),
    p99WarmUs: at(warm, 0.99),
    meanUs: mean
  }
}

// ---------------------------------------------------------------------------------------------
// Metrics: what the table and chart show for each workload.

export interface MetricDef {
  key: string
  label: string
  /** A few characters for the chart's axis. */
  short: string
  better: 'higher' | 'lower'
}

export function metricDefs(w: Workload): MetricDef[] {
  switch (w.kind) {
    case 'stream':
      return w.readRate === undefined
        ? [{ key: 'mibps', label: 'MiB/s', short: 'MiB/s', better: 'higher' }]
        : [
            {
              key: 'writerPeakMiB',
              label: 'writer peak RSS growth MiB',
              short: 'writer RSS',
              better: 'lower'
            },
            {
              key: 'readerPeakMiB',
              label: 'reader peak RSS growth MiB',
              short: 'reader RSS',
              better: 'lower'
            },
            {
              key: 'backlogMiB',
              label: 'MiB unread when writer done',
              short: 'backlog',
              better: 'lower'
            }
          ]
    case 'framed':
      return [{ key: 'kmsgps', label: 'k msg/s', short: 'k msg/s', better: 'higher' }]
    case 'rtt':
      return [
        { key: 'p50Us', label: 'p50 µs', short: 'p50', better: 'lower' },
        { key: 'p99Us', label: 'p99 µs', short: 'p99', better: 'lower' },
        { key: 'p99WarmUs', label: 'p99 after 1k µs', short: 'p99 warm', better: 'lower' }
      ]
    case 'idle':
      return [
        { key: 'serverRssKiB', label: 'server RSS KiB/conn', short: 'srv RSS', better: 'lower' },
        { key: 'serverHeapKiB', label: 'server heap KiB/conn', short: 'srv heap', better: 'lower' },
        { key: 'clientRssKiB', label: 'client RSS KiB/conn', short: 'cli RSS', better: 'lower' },
        { key: 'clientHeapKiB', label: 'client heap KiB/conn', short: 'cli heap', better: 'lower' }
      ]
  }
}

/** Combine the two sides' raw values into the metrics above (plus a few extras for the JSON). */
export function computeMetrics(
  w: Workload,
  client: Record<string, number>,
  server: Record<string, number>
): Record<string, number> {
  const c = (k: string): number => client[k] ?? NaN
  const s = (k: string): number => server[k] ?? NaN
  switch (w.kind) {
    case 'stream': {
      const seconds = (s('tEnd') - c('tStart')) / 1e6
      const total = w.conns * w.bytesPerConn
      // CPU time (user + system) per MiB: steadier than throughput on a shared box, and it
      // shows which side an implementation makes work harder. Writer: until its last write
      // returned; reader: from its first byte to the last connection's last byte. Minor page
      // faults per MiB and collections over the same spans say where CPU time went on memory.
      const mib = total / MiB
      const cpu = {
        writerCpuMsPerMiB: c('cpuMs') / mib,
        readerCpuMsPerMiB: s('cpuMs') / mib,
        writerFaultsPerMiB: c('minorFaults') / mib,
        readerFaultsPerMiB: s('minorFaults') / mib,
        writerGcs: c('gcs'),
        readerGcs: s('gcs')
      }
      if (w.readRate === undefined) return { mibps: mib / seconds, seconds, ...cpu }
      return {
        writerPeakMiB: (c('maxRssKiB') - c('startRssKiB')) / KiB,
        readerPeakMiB: (s('maxRssKiB') - s('startRssKiB')) / KiB,
        backlogMiB: Math.max(0, ((s('tEnd') - c('tWriterDone')) / 1e6) * w.readRate) / MiB,
        writerPeakRssMiB: c('maxRssKiB') / KiB,
        readerPeakRssMiB: s('maxRssKiB') / KiB,
        readMiBps: total / MiB / seconds,
        seconds
      }
    }
    case 'framed': {
      const seconds = (s('tEnd') - c('tStart')) / 1e6
      return {
        kmsgps: w.messages / 1000 / seconds,
        mibps: (w.messages * w.messageSize) / MiB / seconds,
        seconds
      }
    }
    case 'rtt':
      return {
        p50Us: c('p50Us'),
        p99Us: c('p99Us'),
        p99WarmUs: c('p99WarmUs'),
        meanUs: c('meanUs')
      }
    case 'idle':
      return {
        serverRssKiB: s('serverRssPerConn') / KiB,
        serverHeapKiB: s('serverHeapPerConn') / KiB,
        serverExternalKiB: s('serverExternalPerConn') / KiB,
        clientRssKiB: c('clientRssPerConn') / KiB,
        clientHeapKiB: c('clientHeapPerConn') / KiB,
        clientExternalKiB: c('clientExternalPerConn') / KiB,
        serverRssKiBFromZero: s('serverRssPerConnFromZero') / KiB,
        serverHeapKiBFromZero: s('serverHeapPerConnFromZero') / KiB,
        clientRssKiBFromZero: c('clientRssPerConnFromZero') / KiB,
        clientHeapKiBFromZero: c('clientHeapPerConnFromZero') / KiB
      }
  }
}
