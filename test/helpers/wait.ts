import type { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'

// Bounded waits for tests. Nothing here sleeps: every helper waits on an event or a promise and
// gives up after `ms`, and every path (resolve, reject, timeout) clears its timer and removes its
// listeners so that mocha can exit without `--exit`.

function timeoutError(ms: number, what: string): Error {
  return new Error(`timed out after ${ms} ms waiting for ${what}`)
}

/** Settles like `p`, or rejects if `p` has not settled within `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(timeoutError(ms, what)), ms)
  })
  // Promise.race subscribes to `p`, so a late rejection of `p` is never unhandled.
  return Promise.race([p, expired]).finally(() => clearTimeout(timer))
}

/**
 * A bounded `events.once`: resolves with the event's arguments, rejects on 'error' (like
 * `events.once`, unless `event` is 'error' itself) or after `ms`.
 */
export function onceWithin<T extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  ms = 2000
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const watchErrors = event !== 'error'
    const cleanup = (): void => {
      clearTimeout(timer)
      emitter.off(event, onEvent)
      if (watchErrors) emitter.off('error', onError)
    }
    const onEvent = (...args: unknown[]): void => {
      cleanup()
      resolve(args as T)
    }
    const onError = (err: unknown): void => {
      cleanup()
      reject(err instanceof Error ? err : new Error(String(err)))
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(timeoutError(ms, `'${event}'`))
    }, ms)
    emitter.on(event, onEvent)
    if (watchErrors) emitter.on('error', onError)
  })
}

/** Reads `readable` to its end and concatenates the chunks; the whole read is bounded by `ms`. */
export async function collect(readable: AsyncIterable<Uint8Array>, ms = 5000): Promise<Buffer> {
  const iterator = readable[Symbol.asyncIterator]()
  const chunks: Uint8Array[] = []
  let finished = false
  const drain = async (): Promise<Buffer> => {
    try {
      for (;;) {
        const result = await iterator.next()
        if (result.done === true) return Buffer.concat(chunks)
        chunks.push(result.value)
      }
    } finally {
      finished = true
    }
  }
  try {
    return await withTimeout(drain(), ms, 'the end of the stream')
  } catch (err) {
    if (!finished) {
      // Timed out: release the source so it keeps no socket or timer alive. An async iterator's
      // return() is queued behind the read that hung, so a Node stream is destroyed directly.
      if (readable instanceof Readable) readable.destroy()
      void Promise.resolve(iterator.return?.()).catch(() => undefined)
    }
    throw err
  }
}

/**
 * Resolves once `progress()` has stopped changing for a whole `quietMs`: a writer held back by
 * backpressure, a source no longer read. Bound it with withTimeout(); stop it with the returned
 * `stop` (for cleanup).
 */
export function whenStalled(
  progress: () => number,
  quietMs: number
): { stalled: Promise<void>; stop: () => void } {
  let watch: ReturnType<typeof setInterval> | undefined
  const stalled = new Promise<void>((resolve) => {
    let last = Number.NaN
    watch = setInterval(() => {
      const now = progress()
      if (now === last) {
        clearInterval(watch)
        resolve()
      }
      last = now
    }, quietMs)
  })
  return { stalled, stop: () => clearInterval(watch) }
}

/**
 * Resolves once `check()` holds, for at most `ms`: checked on every turn of the event loop, or
 * every `everyMs` for a check that costs something (a file read, a process probe).
 */
export async function until(
  check: () => boolean,
  what: string,
  ms = 2000,
  everyMs = 0
): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) =>
      everyMs === 0 ? setImmediate(resolve) : setTimeout(resolve, everyMs)
    )
  }
}
