/**
 * "Soon, but after the code running now": where coalescing waits for more writes. Node's
 * `process.nextTick` runs only once the pending promise jobs are done, so a `for await` sink
 * queues a whole batch of chunks before the flush; elsewhere a microtask is the closest thing
 * that never waits on a timer.
 */
type Tick = <T>(callback: (argument: T) => void, argument: T) => void

const nodeProcess = (globalThis as { process?: { nextTick?: Tick } }).process

export const nextTick: Tick =
  typeof nodeProcess?.nextTick === 'function'
    ? nodeProcess.nextTick
    : (callback, argument) => queueMicrotask(() => callback(argument))
