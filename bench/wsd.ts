/**
 * Loads ws-duplex from the BUILT package (dist/index.js, made by `npm run build`), so the bench
 * measures what ships. Types come from lib/ so that type-checking bench/ does not need a build.
 */
import type * as WsDuplexModule from '../lib/index.js'

let loaded: Promise<typeof WsDuplexModule> | undefined

export function loadWsDuplex(): Promise<typeof WsDuplexModule> {
  const url = new URL('../dist/index.js', import.meta.url).href
  loaded ??= import(url).then(
    (mod) => mod as typeof WsDuplexModule,
    (err: unknown) => {
      throw new Error(`cannot load ${url} (run \`npm run build\` first): ${String(err)}`)
    }
  )
  return loaded
}
