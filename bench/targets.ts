/**
 * The targets of the performance issue (#3), read off a results file: for each target and each
 * face of ws-duplex, the ratio of medians to its baseline, a 90 % bootstrap interval for that
 * ratio over the run's repeats, and whether the target was met. A miss whose interval reaches
 * the target is one the run cannot tell from noise. It only reports: no thresholds fail a run
 * (shared machines are noisy).
 *
 *   node --import tsx bench/targets.ts [results.json]   (default: bench/results/latest.json)
 */
import { readFileSync } from 'node:fs'
import type { Results } from './chart.js'
import { ratioInterval } from './stats.js'

interface Target {
  label: string
  workload: string
  metric: string
  /** The implementation the ratio is taken against. */
  base: 'ws' | 'net'
  /** `min`: the ratio must be at least `ratio`; `max`: at most. */
  bound: 'min' | 'max'
  ratio: number
}

/** As the issue states them; memory targets are per side. */
const TARGETS: Target[] = [
  {
    label: 'bulk ≥ 1.0× `ws`',
    workload: 'bulk',
    metric: 'mibps',
    base: 'ws',
    bound: 'min',
    ratio: 1
  },
  {
    label: 'bulk ≥ 0.6× `net`',
    workload: 'bulk',
    metric: 'mibps',
    base: 'net',
    bound: 'min',
    ratio: 0.6
  },
  { label: 'small ≥ 4×', workload: 'small', metric: 'mibps', base: 'ws', bound: 'min', ratio: 4 },
  {
    label: 'framed ≥ 2.5×',
    workload: 'framed',
    metric: 'kmsgps',
    base: 'ws',
    bound: 'min',
    ratio: 2.5
  },
  {
    label: 'rtt p50 ≤ 1.1×',
    workload: 'rtt',
    metric: 'p50Us',
    base: 'ws',
    bound: 'max',
    ratio: 1.1
  },
  {
    label: 'rtt p99 ≤ 1.1×',
    workload: 'rtt',
    metric: 'p99Us',
    base: 'ws',
    bound: 'max',
    ratio: 1.1
  },
  {
    label: 'idle heap, server ≤ 1.25×',
    workload: 'idle',
    metric: 'serverHeapKiB',
    base: 'ws',
    bound: 'max',
    ratio: 1.25
  },
  {
    label: 'idle heap, client ≤ 1.25×',
    workload: 'idle',
    metric: 'clientHeapKiB',
    base: 'ws',
    bound: 'max',
    ratio: 1.25
  },
  {
    label: 'idle RSS, server ≤ 1.25×',
    workload: 'idle',
    metric: 'serverRssKiB',
    base: 'ws',
    bound: 'max',
    ratio: 1.25
  },
  {
    label: 'idle RSS, client ≤ 1.25×',
    workload: 'idle',
    metric: 'clientRssKiB',
    base: 'ws',
    bound: 'max',
    ratio: 1.25
  },
  {
    label: 'slow reader RSS, writer ≤ 1.2×',
    workload: 'slow',
    metric: 'writerPeakMiB',
    base: 'ws',
    bound: 'max',
    ratio: 1.2
  },
  {
    label: 'slow reader RSS, reader ≤ 1.2×',
    workload: 'slow',
    metric: 'readerPeakMiB',
    base: 'ws',
    bound: 'max',
    ratio: 1.2
  },
  {
    label: '1,000 streams ≥ 0.9×',
    workload: 'fanout-1000',
    metric: 'mibps',
    base: 'ws',
    bound: 'min',
    ratio: 0.9
  }
]

const FACES = [
  { impl: 'wsd', name: 'Duplex' },
  { impl: 'wsd-it', name: '`sink`/`source`' }
] as const

interface Verdict {
  text: string
  missed: boolean
  /** Missed, but the interval reaches the target. */
  withinNoise: boolean
}

function judge(results: Results, target: Target, impl: string): Verdict | undefined {
  const row = results.results.find((r) => r.workload === target.workload && r.key === target.metric)
  const mine = row?.impls[impl]
  const base = row?.impls[target.base]
  if (mine?.median == null || base?.median == null) return undefined
  const ratio = mine.median / base.median
  if (!Number.isFinite(ratio)) return undefined
  const [low, high] = ratioInterval(mine.values, base.values)
  const met = target.bound === 'min' ? ratio >= target.ratio : ratio <= target.ratio
  const reachable = target.bound === 'min' ? high >= target.ratio : low <= target.ratio
  // Two decimals, or three where two would round a miss onto the target.
  const digits = !met && ratio.toFixed(2) === target.ratio.toFixed(2) ? 3 : 2
  return {
    text: `${ratio.toFixed(digits)}${met ? '' : '✗'} (${low.toFixed(2)}–${high.toFixed(2)})`,
    missed: !met,
    withinNoise: !met && reachable
  }
}

function main(): void {
  const file = process.argv[2] ?? new URL('./results/latest.json', import.meta.url).pathname
  const results = JSON.parse(readFileSync(file, 'utf8')) as Results
  const { meta } = results
  console.log(
    `${file}: ${meta.wsDuplex}; ${meta.cpu}, node ${meta.node}, ${meta.repeats} repeats` +
      `${meta.smoke ? ' (smoke: tiny sizes, not a measurement)' : ''}\n`
  )
  console.log(`| target | ${FACES.map((f) => f.name).join(' | ')} |`)
  console.log(`| --- | ${FACES.map(() => '---:').join(' | ')} |`)
  let judged = 0
  let missed = 0
  let withinNoise = 0
  for (const target of TARGETS) {
    const cells = FACES.map(({ impl }) => {
      const verdict = judge(results, target, impl)
      if (verdict === undefined) return '–'
      judged++
      if (verdict.missed) missed++
      if (verdict.withinNoise) withinNoise++
      return verdict.text
    })
    console.log(`| ${target.label} | ${cells.join(' | ')} |`)
  }
  console.log(
    `\nRatios of medians (90 % bootstrap interval over the repeats); ✗ missed. ` +
      `${missed} of ${judged} missed, ${withinNoise} of them with the target inside the interval.`
  )
}

main()
