/**
 * ws's `allowSynchronousEvents` (default true since ws 8.17): may its receiver emit several
 * messages in one tick, or must it wait a `setImmediate` after each? A `ws` writer sends many
 * messages, as a peer that does not coalesce would; the reader, in a child process, is `ws`
 * itself or a WsDuplex (either face) over a WebSocketServer with the option on or off. Trials are
 * interleaved; every byte is counted and checksummed.
 *
 *   npm run build && node --import tsx bench/sync-events.ts [--repeats=N] [--quick]
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { crc32 } from 'node:zlib'
import { WebSocket, WebSocketServer } from 'ws'
import { tcpPort } from './adapters.js'
import { loadWsDuplex } from './wsd.js'
import { median } from './stats.js'

const READERS = ['ws', 'wsd', 'wsd-it'] as const
type Reader = (typeof READERS)[number]

interface Trial {
  reader: Reader
  synchronous: boolean
  messages: number
  size: number
}

interface Result {
  ok: true
  ms: number
  cpuUs: number
}

interface Failure {
  ok: false
  error: string
}

/** The bytes of message `i`: its first byte varies, so reordering or loss changes the CRC. */
function message(i: number, template: Buffer): Buffer {
  template[0] = i & 0xff
  return template
}

function expectedCrc(messages: number, size: number): number {
  const template = Buffer.alloc(size, 7)
  let crc = 0
  for (let i = 0; i < messages; i++) crc = crc32(message(i, template), crc)
  return crc
}

/** Child: one WebSocketServer, one connection, read until every byte is in. */
async function readerProcess(trial: Trial): Promise<void> {
  const send = (m: unknown): void => {
    process.send?.(m)
  }
  const total = trial.messages * trial.size
  const wanted = expectedCrc(trial.messages, trial.size)
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    allowSynchronousEvents: trial.synchronous
  })
  await once(wss, 'listening')
  const { WsDuplex } = await loadWsDuplex()
  wss.on('connection', (ws) => {
    let got = 0
    let crc = 0
    let start = 0n
    let cpu: NodeJS.CpuUsage | undefined
    const onChunk = (chunk: Uint8Array): void => {
      if (cpu === undefined) {
        cpu = process.cpuUsage()
        start = process.hrtime.bigint()
      }
      got += chunk.byteLength
      crc = crc32(chunk, crc)
      if (got < total) return
      const used = process.cpuUsage(cpu)
      const ms = Number(process.hrtime.bigint() - start) / 1e6
      send(
        got === total && crc === wanted
          ? { ok: true, ms, cpuUs: used.user + used.system }
          : { ok: false, error: `received ${got} of ${total} bytes, CRC ${crc} (want ${wanted})` }
      )
    }
    if (trial.reader === 'ws') {
      ws.on('message', (data: Buffer) => onChunk(data))
      return
    }
    const duplex = new WsDuplex(ws)
    duplex.on('error', (err: Error) => send({ ok: false, error: err.message }))
    if (trial.reader === 'wsd') duplex.on('data', onChunk)
    else
      void (async () => {
        for await (const chunk of duplex.source) onChunk(chunk)
      })()
  })
  send({ port: tcpPort(wss.address()) })
}

/** The child's next message; rejects if it exits first (a crash must not hang the run). */
function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: unknown): void => {
      child.off('exit', onExit)
      resolve(message as T)
    }
    const onExit = (code: number | null): void => {
      child.off('message', onMessage)
      reject(new Error(`reader exited (${String(code)}) before reporting`))
    }
    child.once('message', onMessage)
    child.once('exit', onExit)
  })
}

/** Parent: a plain ws writer with a 256 KiB `bufferedAmount` window, as in the main bench. */
async function runTrial(trial: Trial): Promise<Result | Failure> {
  const child = fork(new URL(import.meta.url), ['--child', JSON.stringify(trial)], {
    execArgv: process.execArgv
  })
  try {
    const { port } = await nextMessage<{ port: number }>(child)
    const result = nextMessage<Result | Failure>(child)
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    await once(ws, 'open')
    const template = Buffer.alloc(trial.size, 7)
    const options = { binary: true, compress: false }
    for (let i = 0; i < trial.messages; i++) {
      const data = message(i, template)
      if (ws.bufferedAmount < 256 * 1024) {
        // A client masks the payload into a frame of its own at once (no deflate here), so the
        // template is free to change for the next message.
        ws.send(data, options)
      } else {
        await new Promise<void>((resolve, reject) =>
          ws.send(data, options, (err) => (err ? reject(err) : resolve()))
        )
      }
    }
    const outcome = await result
    ws.terminate()
    return outcome
  } finally {
    child.kill()
  }
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick')
  const repeatsArg = process.argv.find((a) => a.startsWith('--repeats='))
  const repeats = repeatsArg === undefined ? 3 : Number(repeatsArg.slice('--repeats='.length))
  if (!Number.isInteger(repeats) || repeats < 1)
    throw new Error('--repeats wants a positive integer')
  const workloads = quick
    ? [{ messages: 2000, size: 100 }]
    : [
        { messages: 200_000, size: 100 },
        { messages: 4096, size: 64 * 1024 }
      ]
  const results = new Map<string, Result[]>()
  const key = (t: Trial): string => `${t.messages}×${t.size}|${t.reader}|${String(t.synchronous)}`
  for (let r = 0; r < repeats; r++) {
    for (const { messages, size } of workloads) {
      for (const reader of READERS) {
        for (const synchronous of [true, false]) {
          const trial = { reader, synchronous, messages, size }
          const outcome = await runTrial(trial)
          if (!outcome.ok) throw new Error(`${key(trial)}: ${outcome.error}`)
          const list = results.get(key(trial)) ?? []
          list.push(outcome)
          results.set(key(trial), list)
        }
      }
    }
  }
  console.log(`Medians of ${repeats} interleaved repeats; the reader's CPU per message\n`)
  console.log('| messages | reader | allowSynchronousEvents | k msg/s | reader µs CPU/msg |')
  console.log('| --- | --- | --- | ---: | ---: |')
  for (const { messages, size } of workloads) {
    for (const reader of READERS) {
      for (const synchronous of [true, false]) {
        const list = results.get(key({ reader, synchronous, messages, size })) ?? []
        const rate = median(list.map((x) => messages / x.ms))
        const cpu = median(list.map((x) => x.cpuUs / messages))
        console.log(
          `| ${messages} × ${size} B | ${reader} | ${String(synchronous)} | ` +
            `${rate.toFixed(1)} | ${cpu.toFixed(2)} |`
        )
      }
    }
  }
}

const childAt = process.argv.indexOf('--child')
if (childAt >= 0) await readerProcess(JSON.parse(process.argv[childAt + 1] ?? '') as Trial)
else await main()
