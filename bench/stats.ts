/** Small statistics shared by the bench scripts. */

/** The median; the mean of the middle two for an even count, NaN for none. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2
}

/**
 * A bootstrap interval for median(a) / median(b): both samples resampled with replacement,
 * `confidence` of the resampled ratios inside. Seeded, so a results file always reads the same.
 */
export function ratioInterval(
  a: readonly number[],
  b: readonly number[],
  confidence = 0.9,
  rounds = 4000
): [number, number] {
  if (a.length === 0 || b.length === 0) return [NaN, NaN]
  let seed = 0x2545f491
  const pick = (from: readonly number[]): number => {
    // xorshift32: any fixed sequence will do, it only has to be the same every time.
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return from[(seed >>> 0) % from.length] ?? NaN
  }
  const resample = (from: readonly number[]): number[] => from.map(() => pick(from))
  const ratios: number[] = []
  for (let i = 0; i < rounds; i++) ratios.push(median(resample(a)) / median(resample(b)))
  ratios.sort((x, y) => x - y)
  const tail = (1 - confidence) / 2
  const at = (q: number): number => ratios[Math.min(rounds - 1, Math.floor(q * rounds))] ?? NaN
  return [at(tail), at(1 - tail)]
}
