/**
 * One side of one trial, in its own process (forked by run.ts with --import tsx --expose-gc).
 * The server listens and reads; the client connects and writes. Both talk to run.ts over IPC.
 */
import type { Impl } from './types.js'
import { drive, serve, type Peer, type SideReport, type Workload } from './workloads.js'

export type ToChild =
  | { type: 'job'; role: 'server' | 'client'; impl: string; workload: Workload }
  | { type: 'go'; port: number }
  | { type: 'signal'; name: string }
  | { type: 'progress' }
  | { type: 'exit' }

export type FromChild =
  | { type: 'ready'; port: number }
  | { type: 'report'; report: SideReport }
  | { type: 'signal'; name: string }
  | { type: 'progress'; text: string }

function send(msg: FromChild, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.()
    return
  }
  process.send(msg, undefined, {}, () => then?.())
}

let reported = false
function report(r: SideReport): void {
  if (reported) return
  reported = true
  send({ type: 'report', report: r })
}

function crash(err: unknown): void {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  if (reported) {
    // After the verdict, a late error (a reset while tearing down, say) changes nothing.
    console.error(`[after report] ${text}`)
    return
  }
  reported = true
  send({ type: 'report', report: { ok: false, error: `crashed: ${text}`, values: {} } }, () =>
    process.exit(1)
  )
}
process.on('uncaughtException', crash)
process.on('unhandledRejection', crash)
process.on('disconnect', () => process.exit(0))

const signals = new Set<string>()
const waiters = new Map<string, () => void>()
const peer: Peer = {
  signal: (name) => send({ type: 'signal', name }),
  waitFor: (name) =>
    signals.has(name) ? Promise.resolve() : new Promise((r) => waiters.set(name, r))
}

let impl: Impl | undefined
let job: Extract<ToChild, { type: 'job' }> | undefined
let progress = (): string => 'loading'

async function loadImpl(name: string): Promise<Impl> {
  const url = new URL(`./impls/${name}.ts`, import.meta.url)
  const mod = (await import(url.href)) as { default: Impl }
  return mod.default
}

async function onJob(j: Extract<ToChild, { type: 'job' }>): Promise<void> {
  job = j
  impl = await loadImpl(j.impl)
  if (j.role === 'client') {
    progress = () => 'waiting for go'
    send({ type: 'ready', port: 0 })
    return
  }
  const serving = await serve(j.workload, impl, peer)
  progress = serving.progress
  send({ type: 'ready', port: serving.port })
  report(await serving.report)
}

function onGo(port: number): void {
  if (impl === undefined || job === undefined) throw new Error('go before job')
  const driving = drive(job.workload, impl, port, peer)
  progress = driving.progress
  void driving.report.then(report)
}

process.on('message', (msg: ToChild) => {
  switch (msg.type) {
    case 'job':
      onJob(msg).catch(crash)
      break
    case 'go':
      onGo(msg.port)
      break
    case 'signal':
      signals.add(msg.name)
      waiters.get(msg.name)?.()
      break
    case 'progress':
      send({ type: 'progress', text: progress() })
      break
    case 'exit':
      process.exit(0)
  }
})
