/**
 * Keepalive: ping a quiet peer and give up on a silent one. Any incoming frame counts as life,
 * so the hot path only notes the time; the timers read it. (Keepalive is off by default, and
 * frames carry up to 64 KiB each, so one clock read per frame is noise.) The ping goes out a
 * whole `interval` after the last frame, not at the next multiple of it.
 *
 * A pong can be late for good reasons:
 * - While our reader is slow the socket is paused and frames (the pong included) wait unread in
 *   the kernel: the peer is fine, we are the slow ones. So a paused socket never times out; the
 *   clock restarts once reading resumes.
 * - Our ping may wait behind megabytes of our own data for a slow but steady reader. While our
 *   writes are backed up (the kernel's buffers are full), each one the socket takes means the
 *   peer acknowledged bytes, so it is reading: the wait for the pong is extended. Writes the
 *   kernel takes at once prove nothing (a hung peer's kernel still buffers), so a quiet peer is
 *   pinged as ever.
 */
import type { NormalizedKeepAlive } from './options.js'

export interface KeepAliveHooks {
  isPaused(): boolean
  sendPing(): void
  onTimeout(): void
}

export class KeepAlive {
  readonly #options: NormalizedKeepAlive
  readonly #hooks: KeepAliveHooks
  #timer: NodeJS.Timeout | undefined
  /** performance.now() of the last incoming frame (or of start, or of a paused check). */
  #lastFrameAt = 0
  #pingSentAt = 0
  /** performance.now() of the last backed-up write the socket took. */
  #lastDrainAt = 0
  /** Since when the current wait for a pong counts. */
  #waitingSince = 0

  constructor(options: NormalizedKeepAlive, hooks: KeepAliveHooks) {
    this.#options = options
    this.#hooks = hooks
  }

  start(): void {
    if (this.#timer !== undefined) return
    this.#lastFrameAt = performance.now()
    this.#timer = setTimeout(this.#onIdleCheck, this.#options.interval)
    // The socket keeps the process alive while it is open; this timer alone must not.
    this.#timer.unref()
  }

  /** Called for every incoming frame: kept to one clock read. */
  sawFrame(): void {
    this.#lastFrameAt = performance.now()
  }

  /** Called when the socket took one of our writes while others were still backed up. */
  sawDrain(): void {
    this.#lastDrainAt = performance.now()
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #rearm(callback: () => void, ms: number): void {
    if (this.#timer === undefined) return
    clearTimeout(this.#timer)
    this.#timer = setTimeout(callback, ms)
    this.#timer.unref()
  }

  /** Re-arms the idle check for `interval` after the last frame (a paused socket is a frame now). */
  #checkAgain(now: number): void {
    if (this.#hooks.isPaused()) this.#lastFrameAt = now
    const due = this.#lastFrameAt + this.#options.interval - now
    this.#rearm(this.#onIdleCheck, Math.max(1, Math.ceil(due)))
  }

  readonly #onIdleCheck = (): void => {
    const now = performance.now()
    // Timers may fire a fraction of a millisecond early against this clock: allow for it.
    if (now - this.#lastFrameAt < this.#options.interval - 1 || this.#hooks.isPaused()) {
      this.#checkAgain(now)
      return
    }
    this.#pingSentAt = now
    this.#waitingSince = now
    this.#hooks.sendPing()
    this.#awaitPong()
  }

  /**
   * Looks for the pong by the deadline, or by the next idle check if that comes first: a pong
   * does not call us, and a timeout longer than the interval must not delay the next ping.
   */
  #awaitPong(): void {
    const { interval, timeout } = this.#options
    this.#rearm(this.#onPingDeadline, Math.min(interval, timeout))
  }

  readonly #onPingDeadline = (): void => {
    const now = performance.now()
    if (this.#lastFrameAt >= this.#pingSentAt || this.#hooks.isPaused()) {
      this.#checkAgain(now)
      return
    }
    const left = this.#waitingSince + this.#options.timeout - now
    if (left > 1) {
      // Looked at again within an interval: a pong that comes meanwhile starts the next idle
      // check then, not at the deadline.
      this.#rearm(this.#onPingDeadline, Math.ceil(Math.min(left, this.#options.interval)))
      return
    }
    // The pong may be queued behind our own bytes, which the peer keeps taking: wait on.
    if (this.#lastDrainAt >= this.#waitingSince) {
      this.#waitingSince = now
      this.#awaitPong()
      return
    }
    this.stop()
    this.#hooks.onTimeout()
  }
}
