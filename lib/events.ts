/**
 * The out-of-band channel (`d.events`): what happens on the connection that is not bytes.
 * It has no `'error'` event, so emitting with nobody listening never throws; what ends the
 * stream is the stream's own error. Here: the event types, and a small typed emitter for
 * platforms without `node:events` (WsDuplex uses Node's EventEmitter, duplex-events.ts).
 */
import type { WsDuplexError } from './errors.js'

export interface ClosingInfo {
  /** The close code sent (local) or received (remote). */
  code: number
  reason: string
  /** `'local'`: we sent the first close frame; `'remote'`: the peer did. */
  initiator: 'local' | 'remote'
}

export interface CloseInfo {
  /** The peer's close code, or 1006 when the connection ended without one. */
  code: number
  reason: string
  /** True when the close handshake completed and the stream ended without an error. */
  wasClean: boolean
}

export interface WsDuplexEvents {
  /** The opening handshake completed (only for a socket that was still connecting). */
  open: []
  /** A non-fatal problem: a text frame under the `'ignore'` policy, or the first sign of a fatal one. */
  warning: [error: WsDuplexError]
  /** The peer pinged us (ws has already answered with a pong). */
  ping: [data: Uint8Array]
  /** A pong arrived (an answer to `ping()` or keepalive, or unsolicited). */
  pong: [data: Uint8Array]
  /** The close handshake started. Emitted at most once. */
  closing: [info: ClosingInfo]
  /** The connection is over. Emitted exactly once, and last. */
  close: [info: CloseInfo]
}

type Listener<Args extends unknown[]> = (...args: Args) => void

/** What the engine emits to: Node's EventEmitter and `StreamEvents` both fit. */
export interface EventSink {
  emit<K extends keyof WsDuplexEvents>(name: K, ...args: WsDuplexEvents[K]): boolean
}

/**
 * A typed emitter with EventEmitter's everyday methods. Like EventEmitter it never throws for an
 * unobserved event, 'warning' included; unlike it, 'error' is not special (there is none).
 */
export class StreamEvents implements EventSink {
  readonly #listeners = new Map<keyof WsDuplexEvents, Listener<never[]>[]>()

  on<K extends keyof WsDuplexEvents>(name: K, listener: Listener<WsDuplexEvents[K]>): this {
    const list = this.#listeners.get(name) ?? []
    list.push(listener as Listener<never[]>)
    this.#listeners.set(name, list)
    return this
  }

  addListener<K extends keyof WsDuplexEvents>(
    name: K,
    listener: Listener<WsDuplexEvents[K]>
  ): this {
    return this.on(name, listener)
  }

  once<K extends keyof WsDuplexEvents>(name: K, listener: Listener<WsDuplexEvents[K]>): this {
    const wrapper = (...args: WsDuplexEvents[K]): void => {
      this.off(name, wrapper)
      listener(...args)
    }
    onceOriginals.set(wrapper as Listener<never[]>, listener as Listener<never[]>)
    return this.on(name, wrapper)
  }

  off<K extends keyof WsDuplexEvents>(name: K, listener: Listener<WsDuplexEvents[K]>): this {
    const list = this.#listeners.get(name)
    if (list === undefined) return this
    const index = list.findIndex(
      (entry) => entry === listener || onceOriginals.get(entry) === listener
    )
    if (index !== -1) list.splice(index, 1)
    if (list.length === 0) this.#listeners.delete(name)
    return this
  }

  removeListener<K extends keyof WsDuplexEvents>(
    name: K,
    listener: Listener<WsDuplexEvents[K]>
  ): this {
    return this.off(name, listener)
  }

  removeAllListeners(name?: keyof WsDuplexEvents): this {
    if (name === undefined) this.#listeners.clear()
    else this.#listeners.delete(name)
    return this
  }

  listenerCount(name: keyof WsDuplexEvents): number {
    return this.#listeners.get(name)?.length ?? 0
  }

  emit<K extends keyof WsDuplexEvents>(name: K, ...args: WsDuplexEvents[K]): boolean {
    const list = this.#listeners.get(name)
    if (list === undefined) return false
    // A copy: a listener may remove itself (once) or others while we iterate.
    for (const listener of [...list]) (listener as Listener<WsDuplexEvents[K]>)(...args)
    return true
  }
}

/** once() wrappers to the listener they wrap, so off(listener) finds them. */
const onceOriginals = new WeakMap<Listener<never[]>, Listener<never[]>>()
