/**
 * The benchmark orchestrator: runs every (workload, implementation) pair as a trial with the server
 * and the client in two fresh processes on 127.0.0.1, interleaved (A B C A B C …) so that the
 * machine's drift hits every implementation alike, then prints medians with ratios to `ws` and to
 * raw `net`, and writes a JSON file and an SVG chart.
 *
 *   node --import tsx bench/run.ts [--smoke] [--only=workload,...] [--impl=a,b] [--repeats=N]
 *                                  [--out=file.json]
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { renderChart, type Results, type ResultRow, type Trial } from './chart.js'
import type { FromChild, ToChild } from './child.js'
import {
  computeMetrics,
  metricDefs,
  workloads,
  type SideReport,
  type Workload
} from './workloads.js'
import { median } from './stats.js'

/** Report order; any other file in bench/impls/ is appended alphabetically. */
const ORDER = ['net', 'ws', 'ws-nosync', 'cws', 'it-ws', 'websocket-stream', 'wsd', 'wsd-it']
const BASELINES = ['ws', 'net'] as const
/** A failure of these (the baselines and the product) makes the run exit 1, so CI notices rot. */
const MUST_PASS = ['net', 'ws', 'wsd', 'wsd-it']

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))

// ---------------------------------------------------------------------------------------------
// Command line

interface Options {
  smoke: boolean
  only: string[] | undefined
  impls: string[] | undefined
  repeats: number | undefined
  out: string | undefined
}

function usage(): never {
  console.log(
    'usage: node --import tsx bench/run.ts [--smoke] [--only=workload,...] [--impl=a,b]\n' +
      '                                    [--repeats=N] [--out=file.json]\n' +
      `workloads: ${workloads(false)
        .map((w) => w.name)
        .join(', ')} (a prefix such as "fanout" selects a group)\n` +
      `impls: ${listImpls().join(', ')}`
  )
  process.exit(0)
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    smoke: false,
    only: undefined,
    impls: undefined,
    repeats: undefined,
    out: undefined
  }
  const list = (v: string): string[] => v.split(',').filter((s) => s !== '')
  for (const arg of argv) {
    const [key, value = ''] = arg.split('=', 2)
    if (key === '--smoke') opts.smoke = true
    else if (key === '--only') opts.only = list(value)
    else if (key === '--impl' || key === '--impls') opts.impls = list(value)
    else if (key === '--repeats') opts.repeats = Number(value)
    else if (key === '--out') opts.out = value
    else if (key === '--help' || key === '-h') usage()
    else throw new Error(`unknown argument ${arg} (try --help)`)
  }
  if (opts.repeats !== undefined && !(Number.isInteger(opts.repeats) && opts.repeats > 0)) {
    throw new Error('--repeats wants a positive integer')
  }
  return opts
}

function listImpls(): string[] {
  const found = readdirSync(here('./impls/'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -3))
  const known = ORDER.filter((n) => found.includes(n))
  return [...known, ...found.filter((n) => !ORDER.includes(n)).sort()]
}

function selectWorkloads(all: Workload[], only: string[] | undefined): Workload[] {
  if (only === undefined) return all
  // An exact name picks that workload; otherwise a prefix picks a group ("fanout": fanout-*).
  const matches = (o: string): Workload[] => {
    const exact = all.filter((w) => w.name === o)
    return exact.length > 0 ? exact : all.filter((w) => w.name.startsWith(`${o}-`))
  }
  const unknown = only.filter((o) => matches(o).length === 0)
  if (unknown.length > 0) throw new Error(`unknown workload(s): ${unknown.join(', ')}`)
  const picked = new Set(only.flatMap(matches))
  return all.filter((w) => picked.has(w))
}

// ---------------------------------------------------------------------------------------------
// Child processes

const childArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')

class Child {
  readonly proc: ChildProcess
  private readonly inbox: FromChild[] = []
  private readonly waiting: (() => void)[] = []
  private output = ''
  private exitInfo: string | undefined
  readonly exited: Promise<void>

  constructor() {
    this.proc = fork(here('./child.ts'), [], {
      // BENCH_NODE_ARGS adds node flags to every child, e.g. "--cpu-prof --cpu-prof-dir=prof".
      execArgv: ['--import', 'tsx', '--expose-gc', ...childArgs],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc']
    })
    const keep = (data: Buffer): void => {
      this.output = (this.output + data.toString()).slice(-2000)
    }
    this.proc.stdout?.on('data', keep)
    this.proc.stderr?.on('data', keep)
    this.proc.on('message', (msg: FromChild) => {
      this.inbox.push(msg)
      this.wake()
    })
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitInfo = `exited (${signal ?? `code ${code}`})`
        this.wake()
        resolve()
      })
    })
  }

  private wake(): void {
    for (const w of this.waiting.splice(0)) w()
  }

  send(msg: ToChild): void {
    if (this.proc.connected) this.proc.send(msg)
  }

  /** The next message of this type (buffered if it came early); rejects if the child exits. */
  async next<T extends FromChild['type']>(type: T): Promise<Extract<FromChild, { type: T }>> {
    for (;;) {
      const i = this.inbox.findIndex((m) => m.type === type)
      if (i >= 0) return this.inbox.splice(i, 1)[0] as Extract<FromChild, { type: T }>
      if (this.exitInfo !== undefined) throw new Error(`${this.exitInfo}: ${this.tail()}`)
      await new Promise<void>((resolve) => this.waiting.push(resolve))
    }
  }

  tail(): string {
    return this.output.trim().split('\n').slice(-4).join(' | ')
  }

  async progress(): Promise<string> {
    if (this.exitInfo !== undefined) return this.exitInfo
    this.send({ type: 'progress' })
    const answer = this.next('progress').then((m) => m.text)
    return Promise.race([answer, sleepValue(1000, 'no answer')])
  }

  async stop(): Promise<void> {
    this.send({ type: 'exit' })
    if (await Promise.race([this.exited.then(() => true), sleepValue(2000, false)])) return
    this.proc.kill('SIGKILL')
    await this.exited
  }
}

function sleepValue<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms).unref())
}

class Timeout extends Error {}

/** One trial: a fresh server process and a fresh client process. */
async function trial(impl: string, w: Workload, repeat: number): Promise<Trial> {
  const started = performance.now()
  const server = new Child()
  const client = new Child()
  const base = { impl, workload: w.name, repeat }
  server.proc.on('message', (m: FromChild) => m.type === 'signal' && client.send(m))
  client.proc.on('message', (m: FromChild) => m.type === 'signal' && server.send(m))
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Timeout()), w.timeoutS * 1000)
  })
  try {
    server.send({ type: 'job', role: 'server', impl, workload: w })
    client.send({ type: 'job', role: 'client', impl, workload: w })
    const [ready] = await Promise.race([
      Promise.all([server.next('ready'), client.next('ready')]),
      deadline
    ])
    client.send({ type: 'go', port: ready.port })
    const reports = Promise.all([client.next('report'), server.next('report')])
    const [c, s]: SideReport[] = (await Promise.race([reports, deadline])).map((m) => m.report)
    if (c === undefined || s === undefined) throw new Error('missing report')
    const errors = [
      c.ok ? undefined : `client: ${c.error ?? '?'}`,
      s.ok ? undefined : `server: ${s.error ?? '?'}`
    ].filter((e) => e !== undefined)
    const seconds = (performance.now() - started) / 1000
    if (errors.length > 0) return { ...base, ok: false, error: errors.join('; '), seconds }
    const metrics = computeMetrics(w, c.values, s.values)
    const bad = metricDefs(w).filter((m) => !Number.isFinite(metrics[m.key]))
    if (bad.length > 0) {
      const error = `no value for ${bad.map((m) => m.key).join(', ')}`
      return { ...base, ok: false, error, seconds }
    }
    return { ...base, ok: true, metrics, seconds }
  } catch (err) {
    let error = err instanceof Error ? err.message : String(err)
    if (err instanceof Timeout) {
      const [sp, cp] = await Promise.all([server.progress(), client.progress()])
      error = `timeout after ${w.timeoutS} s (server: ${sp}; client: ${cp})`
    }
    return { ...base, ok: false, error, seconds: (performance.now() - started) / 1000 }
  } finally {
    clearTimeout(timer)
    await Promise.all([server.stop(), client.stop()])
  }
}

// ---------------------------------------------------------------------------------------------
// Summaries

function summarize(ws: Workload[], impls: string[], trials: Trial[]): ResultRow[] {
  const rows: ResultRow[] = []
  for (const w of ws) {
    for (const def of metricDefs(w)) {
      const row: ResultRow = { workload: w.name, title: w.title, ...def, impls: {} }
      for (const impl of impls) {
        const mine = trials.filter((t) => t.impl === impl && t.workload === w.name)
        const values = mine.flatMap((t) => (t.ok ? [t.metrics?.[def.key] ?? NaN] : []))
        const failures = mine.flatMap((t) => (t.ok ? [] : [t.error ?? 'failed']))
        row.impls[impl] = {
          median: failures.length === 0 && values.length > 0 ? median(values) : null,
          values,
          failures
        }
      }
      rows.push(row)
    }
  }
  return rows
}

function fmt(v: number): string {
  const a = Math.abs(v)
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toPrecision(2)
}

function table(
  rows: ResultRow[],
  impls: string[],
  cell: (r: ResultRow, i: string) => string
): string {
  const header = ['workload', 'metric', ...impls]
  const body = rows.map((r) => [
    r.workload,
    `${r.label} ${r.better === 'higher' ? '↑' : '↓'}`,
    ...impls.map((i) => cell(r, i))
  ])
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((b) => (b[c] ?? '').length)))
  const line = (cells: string[]): string =>
    `| ${cells.map((x, c) => (c < 2 ? x.padEnd(widths[c] ?? 0) : x.padStart(widths[c] ?? 0))).join(' | ')} |`
  const rule = `|${widths.map((wd, c) => (c < 2 ? '-'.repeat(wd + 2) : `${'-'.repeat(wd + 1)}:`)).join('|')}|`
  return [line(header), rule, ...body.map(line)].join('\n')
}

function report(rows: ResultRow[], impls: string[], ws: Workload[], repeats: number): string {
  const value = (r: ResultRow, i: string): string => {
    const x = r.impls[i]
    if (x === undefined) return '–'
    if (x.failures.length > 0)
      return `FAIL ${x.failures.length}/${x.failures.length + x.values.length}`
    return x.median === null ? '–' : fmt(x.median)
  }
  const ratio =
    (base: string) =>
    (r: ResultRow, i: string): string => {
      const v = r.impls[i]?.median
      const b = r.impls[base]?.median
      if (v === null || v === undefined) return value(r, i) === '–' ? '–' : 'FAIL'
      if (b === null || b === undefined || b === 0) return '–'
      return `${(v / b).toFixed(2)}×`
    }
  const parts = [
    `Medians of ${repeats} interleaved repeat${repeats === 1 ? '' : 's'} (↑ higher is better, ↓ lower is better)`,
    '',
    table(rows, impls, value),
    ''
  ]
  for (const b of BASELINES) {
    if (!impls.includes(b)) continue
    parts.push(
      `Ratio to ${b} (value ÷ ${b}'s value: on ↑ rows above 1 is faster, on ↓ rows above 1 costs more)`,
      ''
    )
    parts.push(table(rows, impls, ratio(b)), '')
  }
  parts.push('Workloads:', ...ws.map((w) => `  ${w.name.padEnd(12)} ${w.title}`))
  return parts.join('\n')
}

/** Which ws-duplex was measured: the commit, whether the tree was dirty, when dist/ was built. */
function version(): string {
  const git = (...args: string[]): string => {
    try {
      return execFileSync('git', args, { cwd: here('..'), encoding: 'utf8' }).trim()
    } catch {
      return '?'
    }
  }
  const dirty = git('status', '--porcelain', '--', 'lib') === '' ? '' : ' (lib/ modified)'
  const dist = here('../dist/index.js')
  const built = existsSync(dist) ? statSync(dist).mtime.toISOString() : 'missing'
  return `${git('rev-parse', '--short', 'HEAD')}${dirty}, dist built ${built}`
}

// ---------------------------------------------------------------------------------------------

/** `list` starting at index `by` (mod its length), wrapping around. */
function rotated<T>(list: readonly T[], by: number): T[] {
  const start = by % list.length
  return [...list.slice(start), ...list.slice(0, start)]
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const allImpls = listImpls()
  const impls = opts.impls ?? allImpls
  const missing = impls.filter((i) => !allImpls.includes(i))
  if (missing.length > 0) throw new Error(`unknown impl(s): ${missing.join(', ')}`)
  const ws = selectWorkloads(workloads(opts.smoke), opts.only)
  const repeats = opts.repeats ?? (opts.smoke ? 1 : 3)
  const partial = opts.only !== undefined || opts.impls !== undefined
  // A filtered run, smoke or not, never overwrites the published files.
  const out =
    opts.out ?? here(`./results/${partial ? 'partial' : opts.smoke ? 'smoke' : 'latest'}.json`)
  const svgOut = out.endsWith('latest.json')
    ? out.replace(/latest\.json$/, 'chart.svg')
    : out.replace(/\.json$/, '') + '.svg'
  if (impls.some((i) => i.startsWith('wsd')) && !existsSync(here('../dist/index.js'))) {
    console.warn(
      'warning: dist/index.js is missing, so wsd and wsd-it will fail: run `npm run build`'
    )
  }

  const total = ws.length * repeats * impls.length
  console.log(
    `ws-duplex bench${opts.smoke ? ' (smoke)' : ''}: ${ws.length} workloads × ${impls.length} impls × ${repeats} repeats = ${total} trials`
  )
  const started = Date.now()
  const measured = version()
  console.log(`ws-duplex: ${measured}`)
  const trials: Trial[] = []
  let n = 0
  let stopping = false
  process.once('SIGINT', () => {
    stopping = true
    console.log('\ninterrupted: finishing the current trial, then writing what we have')
  })
  // Interleave: for each workload, repeat the whole list of implementations, starting one
  // further along each round, so that no implementation always runs right after the same one
  // (a trial can leave the machine busier or cooler for the next).
  outer: for (const w of ws) {
    for (let r = 1; r <= repeats; r++) {
      for (const impl of rotated(impls, r - 1)) {
        if (stopping) break outer
        const t = await trial(impl, w, r)
        trials.push(t)
        const shown = metricDefs(w)
          .map((m) => `${fmt(t.metrics?.[m.key] ?? NaN)} ${m.label}`)
          .join(', ')
        console.log(
          `[${String(++n).padStart(String(total).length)}/${total}] ${w.name} #${r} ${impl.padEnd(16)} ` +
            `${t.ok ? shown : `FAIL: ${t.error ?? ''}`} (${t.seconds.toFixed(1)} s)`
        )
      }
    }
  }

  const rows = summarize(ws, impls, trials)
  const text = report(rows, impls, ws, repeats)
  const results: Results = {
    meta: {
      date: new Date().toISOString(),
      command: `node --import tsx bench/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
      smoke: opts.smoke,
      repeats,
      node: process.version,
      cpu: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      wsDuplex: measured,
      durationS: Math.round((Date.now() - started) / 1000),
      impls,
      baselines: [...BASELINES],
      workloads: ws
    },
    results: rows,
    trials,
    table: text
  }
  mkdirSync(here('./results/'), { recursive: true })
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n')
  writeFileSync(svgOut, renderChart(results))
  console.log(`\n${text}\n`)
  const failed = trials.filter((t) => !t.ok)
  if (failed.length > 0) {
    console.log('Failures:')
    for (const t of failed) console.log(`  ${t.impl} ${t.workload} #${t.repeat}: ${t.error ?? ''}`)
    console.log('')
  }
  console.log(`wrote ${out} and ${svgOut} in ${results.meta.durationS} s`)
  const fatal = failed.filter((t) => MUST_PASS.includes(t.impl))
  if (fatal.length > 0) {
    console.log(`${fatal.length} failure(s) of ${MUST_PASS.join('/')}: exiting 1`)
    process.exitCode = 1
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err)
  process.exit(1)
})
