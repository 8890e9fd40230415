/**
 * A small SVG bar chart of a results file, with no dependency: every implementation relative to
 * `ws` used directly, on a log scale, oriented so that a taller bar is always better.
 *
 *   node --import tsx bench/chart.ts [results.json] [chart.svg]
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import type { MetricDef, Workload } from './workloads.js'

export interface Trial {
  impl: string
  workload: string
  repeat: number
  ok: boolean
  error?: string
  metrics?: Record<string, number>
  seconds: number
}

export interface ResultRow extends MetricDef {
  workload: string
  title: string
  impls: Record<string, { median: number | null; values: number[]; failures: string[] }>
}

export interface Results {
  meta: {
    date: string
    command: string
    smoke: boolean
    repeats: number
    node: string
    cpu: string
    memoryGiB: number
    wsDuplex: string
    durationS: number
    impls: string[]
    baselines: string[]
    workloads: Workload[]
  }
  results: ResultRow[]
  trials: Trial[]
  table: string
}

const BASE = 'ws'
const COLORS: Record<string, string> = {
  net: '#8c8c8c',
  'ws-nosync': '#9c755f',
  cws: '#4e79a7',
  'it-ws': '#f28e2b',
  'websocket-stream': '#b07aa1',
  wsd: '#2f9e44',
  'wsd-it': '#76b7b2'
}
const EXTRA = ['#e15759', '#edc948', '#ff9da7', '#59a14f']

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

const f = (n: number): string => (Math.round(n * 10) / 10).toString()

function ratioLabel(l: number): string {
  if (l >= 0) return `${2 ** l}×`
  return `1/${2 ** -l}×`
}

interface Bar {
  impl: string
  ratio: number | null
  failed: boolean
}

interface Group {
  label: string[]
  bars: Bar[]
}

function groups(rows: ResultRow[], impls: string[]): Group[] {
  return rows.flatMap((row) => {
    const base = row.impls[BASE]?.median
    if (base === null || base === undefined || base <= 0) return []
    const bars = impls.map((impl): Bar => {
      const x = row.impls[impl]
      const v = x?.median
      const failed = x !== undefined && x.failures.length > 0
      if (v === null || v === undefined || v <= 0) return { impl, ratio: null, failed }
      return { impl, ratio: row.better === 'higher' ? v / base : base / v, failed }
    })
    return [{ label: [row.workload, row.short], bars }]
  })
}

function panel(title: string, gs: Group[], impls: string[], y0: number, width: number): string[] {
  const out: string[] = []
  const left = 56
  const plotH = 220
  const groupW = (width - left - 16) / Math.max(1, gs.length)
  const barW = Math.min(14, (groupW - 12) / Math.max(1, impls.length))
  const logs = gs.flatMap((g) =>
    g.bars.flatMap((b) => (b.ratio === null ? [] : [Math.log2(b.ratio)]))
  )
  const lo = Math.max(-8, Math.min(-1, Math.floor(Math.min(0, ...logs))))
  const hi = Math.min(8, Math.max(1, Math.ceil(Math.max(0, ...logs))))
  const top = y0 + 28
  const y = (l: number): number => top + ((hi - Math.max(lo, Math.min(hi, l))) / (hi - lo)) * plotH
  out.push(`<text x="${left}" y="${y0 + 14}" class="h">${esc(title)}</text>`)
  for (let l = lo; l <= hi; l++) {
    const yy = f(y(l))
    const cls = l === 0 ? 'one' : 'grid'
    out.push(`<line x1="${left}" x2="${width - 16}" y1="${yy}" y2="${yy}" class="${cls}"/>`)
    out.push(`<text x="${left - 6}" y="${f(y(l) + 4)}" class="tick">${ratioLabel(l)}</text>`)
  }
  gs.forEach((g, gi) => {
    const gx = left + gi * groupW + (groupW - barW * impls.length) / 2
    g.bars.forEach((b, bi) => {
      const x = gx + bi * barW
      if (b.failed) {
        const cx = f(x + barW / 2)
        out.push(
          `<text x="${cx}" y="${f(y(0) + 4)}" class="fail">✗<title>${esc(b.impl)}: failed</title></text>`
        )
        return
      }
      if (b.ratio === null) return
      const l = Math.log2(b.ratio)
      const y1 = Math.min(y(0), y(l))
      const h = Math.max(1, Math.abs(y(l) - y(0)))
      const color = COLORS[b.impl] ?? EXTRA[impls.indexOf(b.impl) % EXTRA.length] ?? '#333'
      out.push(
        `<rect x="${f(x + 0.5)}" y="${f(y1)}" width="${f(barW - 1)}" height="${f(h)}" fill="${color}">` +
          `<title>${esc(`${b.impl} ${g.label.join(' ')}: ${b.ratio.toFixed(2)}× ${BASE}`)}</title></rect>`
      )
    })
    const cx = f(left + gi * groupW + groupW / 2)
    g.label.forEach((line, li) => {
      const ly = f(top + plotH + 14 + li * 12)
      out.push(`<text x="${cx}" y="${ly}" class="${li === 0 ? 'lbl' : 'sub'}">${esc(line)}</text>`)
    })
  })
  return out
}

export function renderChart(r: Results): string {
  const impls = r.meta.impls.filter((i) => i !== BASE)
  const higher = groups(
    r.results.filter((x) => x.better === 'higher'),
    impls
  )
  const lower = groups(
    r.results.filter((x) => x.better === 'lower'),
    impls
  )
  const width = Math.max(880, 80 + Math.max(higher.length, lower.length) * (impls.length * 12 + 16))
  const panels: [string, Group[]][] = [
    [`Throughput: value ÷ ${BASE}'s`, higher],
    [`Latency and memory: ${BASE}'s ÷ value`, lower]
  ]
  const shown = panels.filter(([, g]) => g.length > 0)
  const panelH = 290
  const height = 74 + shown.length * panelH + 24
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    '<style>',
    '.t{font-size:15px;font-weight:600;fill:#222}.m{font-size:11px;fill:#666}',
    '.h{font-size:13px;font-weight:600;fill:#333}.tick{font-size:10px;fill:#666;text-anchor:end}',
    '.lbl{font-size:10px;fill:#333;text-anchor:middle}.sub{font-size:9px;fill:#777;text-anchor:middle}',
    '.grid{stroke:#e4e4e4;stroke-width:1}.one{stroke:#333;stroke-width:1.2}',
    '.fail{font-size:11px;fill:#d62728;text-anchor:middle;font-weight:700}.leg{font-size:11px;fill:#333}',
    '</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="16" y="24" class="t">ws-duplex benchmark: each implementation relative to ws used directly (log scale, taller is better)</text>`,
    `<text x="16" y="42" class="m">${esc(
      `${r.meta.smoke ? 'SMOKE RUN (tiny sizes, not a measurement) · ' : ''}median of ${r.meta.repeats} interleaved run(s) · ` +
        `node ${r.meta.node} · ${r.meta.cpu.slice(0, 24)} · ${r.meta.date.slice(0, 10)} · client, server: 2 processes`
    )}</text>`
  ]
  let lx = 16
  for (const impl of impls) {
    const color = COLORS[impl] ?? EXTRA[impls.indexOf(impl) % EXTRA.length] ?? '#333'
    out.push(`<rect x="${lx}" y="52" width="10" height="10" fill="${color}"/>`)
    out.push(`<text x="${lx + 14}" y="61" class="leg">${esc(impl)}</text>`)
    lx += 24 + impl.length * 7
  }
  out.push(`<text x="${lx + 8}" y="61" class="leg">(black line: ${BASE} = 1×; ✗ failed)</text>`)
  shown.forEach(([title, g], i) => out.push(...panel(title, g, impls, 74 + i * panelH, width)))
  out.push('</svg>')
  return out.join('\n') + '\n'
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const input = process.argv[2] ?? new URL('./results/latest.json', import.meta.url).pathname
  const output = process.argv[3] ?? new URL('./results/chart.svg', import.meta.url).pathname
  const results = JSON.parse(readFileSync(input, 'utf8')) as Results
  writeFileSync(output, renderChart(results))
  console.log(`wrote ${output}`)
}
