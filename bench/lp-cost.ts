/**
 * What the `framed` workload's own codec costs, with no transport at all: the same 200,000
 * messages of 100 bytes through `it-length-prefixed`'s encoder (the writer's side), and
 * through its decoder from 64 KiB chunks, as ws-duplex delivers them, with the bench's
 * per-message length check and CRC (the reader's side). Any stream that carries the workload
 * pays at least this per message, so 1 / (the slower side) is the most any of them can reach;
 * `ws` used directly sends one WebSocket message per message and pays none of it, which is
 * why the `framed` ratio to `ws` moves with the machine (bench/README.md, "On a second machine").
 *
 * Each side runs in a fresh process, cold, as a bench trial does; runs are interleaved.
 *
 *   node --import tsx bench/lp-cost.ts [--runs=N] [--quick]
 */
import { fork, type ChildProcess } from 'node:child_process'
import * as lp from 'it-length-prefixed'
import {
  framedMessages,
  KiB,
  streamCrc,
  Verifier,
  workloads,
  type FramedWorkload
} from './workloads.js'
import { median } from './stats.js'

/** `--quick` is CI's seconds-long version (the smoke workload's 2,000 messages). */
const QUICK = process.argv.includes('--quick')
const SIDES = ['encode', 'decode'] as const
type Side = (typeof SIDES)[number]
/** ws-duplex hands a reader its frames, at most 64 KiB each by default. */
const FRAME = 64 * KiB

interface Cost {
  side: Side
  /** Wall time per message, µs. */
  us: number
  /** CPU (user + system) per message, µs. */
  cpuUs: number
}

function framed(): FramedWorkload {
  const w = workloads(QUICK).find((x): x is FramedWorkload => x.kind === 'framed')
  if (w === undefined) throw new Error('no framed workload')
  return w
}

/** Starts the clock; the returned function reads wall time and CPU per message so far. */
function startTimer(count: number): () => { us: number; cpuUs: number } {
  const t0 = process.hrtime.bigint()
  const cpu0 = process.cpuUsage()
  return () => {
    const cpu = process.cpuUsage(cpu0)
    return {
      us: Number(process.hrtime.bigint() - t0) / 1000 / count,
      cpuUs: (cpu.user + cpu.system) / count
    }
  }
}

/** Child: one side, timed from its first message to its last. */
async function measure(side: Side): Promise<Cost> {
  const w = framed()
  if (side === 'encode') {
    let bytes = 0
    const elapsed = startTimer(w.messages)
    for (const chunk of lp.encode(framedMessages(w))) bytes += chunk.byteLength
    const cost = elapsed()
    // One varint byte per 100-byte message.
    if (bytes !== w.messages * (w.messageSize + 1)) throw new Error(`encoded ${bytes} bytes`)
    return { side, ...cost }
  }
  const wire = Buffer.concat([...lp.encode(framedMessages(w))])
  async function* frames(): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < wire.length; offset += FRAME) {
      yield wire.subarray(offset, offset + FRAME)
    }
  }
  const total = w.messages * w.messageSize
  const verifier = new Verifier(total, streamCrc(total))
  let badLength = 0
  const elapsed = startTimer(w.messages)
  for await (const message of lp.decode(frames())) {
    if (message.byteLength !== w.messageSize) badLength++
    verifier.push(message.subarray())
  }
  const cost = elapsed()
  const problem = badLength > 0 ? `${badLength} messages had the wrong length` : verifier.problem()
  if (problem !== undefined) throw new Error(problem)
  return { side, ...cost }
}

function run(side: Side): Promise<Cost> {
  const child: ChildProcess = fork(
    new URL(import.meta.url).pathname,
    ['--child', side, ...(QUICK ? ['--quick'] : [])],
    {
      execArgv: process.execArgv
    }
  )
  return new Promise<Cost>((resolve, reject) => {
    const onExit = (code: number | null): void => {
      reject(new Error(`the ${side} child exited with ${String(code)} before it reported`))
    }
    child.once('exit', onExit)
    child.once('message', (cost) => {
      child.off('exit', onExit)
      child.kill()
      resolve(cost as Cost)
    })
  })
}

async function main(): Promise<void> {
  const runsArg = process.argv.find((a) => a.startsWith('--runs='))
  const runs = runsArg === undefined ? 5 : Number(runsArg.slice('--runs='.length))
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs wants a positive integer')
  const w = framed()
  const costs = new Map<Side, Cost[]>(SIDES.map((s) => [s, []]))
  for (let r = 0; r < runs; r++) {
    for (const side of SIDES) costs.get(side)?.push(await run(side))
  }
  console.log(`${w.title}: it-length-prefixed alone, fresh processes, medians of ${runs}\n`)
  console.log('| side | µs per message | µs CPU per message | at most, k msg/s |')
  console.log('| --- | ---: | ---: | ---: |')
  let slowest = 0
  for (const side of SIDES) {
    const list = costs.get(side) ?? []
    const us = median(list.map((c) => c.us))
    slowest = Math.max(slowest, us)
    const label = side === 'encode' ? 'writer: encode' : 'reader: decode + check'
    console.log(
      `| ${label} | ${us.toFixed(2)} | ${median(list.map((c) => c.cpuUs)).toFixed(2)} | ${(1000 / us).toFixed(0)} |`
    )
  }
  console.log(
    `\nNo stream carrying this workload can pass about ${(1000 / slowest).toFixed(0)} k msg/s here.`
  )
}

const childAt = process.argv.indexOf('--child')
if (childAt !== -1) {
  const side = process.argv[childAt + 1] as Side
  measure(side).then(
    (cost) => process.send?.(cost),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
} else {
  main().catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
