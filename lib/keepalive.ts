/**
 * Keepalive: ping a quiet peer and give up on a silent one. Any incoming frame counts as life,
 * and so does each of our frames that the socket takes: once the kernel's buffers are full it
 * takes bytes only as the peer acknowledges them. Without that, a ping queued behind megabytes
 * for a slow but steady reader would come back late and cut a healthy transfer. The hot path
 * only notes the time; the timers read it. (Keepalive is off by default, and frames carry up
 * to 64 KiB each, so one clock read per frame is noise.) The ping goes out a whole `interval`
 * after the last sign of life, not at the next multiple of it.
 *
 * While our reader is slow the socket is paused and frames (the pong included) wait unread in
 * the kernel: the peer is fine, we are the slow ones. So a paused socket never times out; the
 * clock restarts once reading resumes.
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
  /** performance.now() of the last frame in or out (or of start, or of a paused check). */
  #lastLifeAt = 0
  #pingSentAt = 0

  constructor(options: NormalizedKeepAlive, hooks: KeepAliveHooks) {
    this.#options = options
    this.#hooks = hooks
  }

  start(): void {
    if (this.#timer !== undefined) return
    this.#lastLifeAt = performance.now()
    this.#timer = setTimeout(this.#onIdleCheck, this.#options.interval)
    // The socket keeps the process alive while it is open; this timer alone must not.
    this.#timer.unref()
  }

  /** Called for every frame received or handed to the socket: kept to one clock read. */
  sawLife(): void {
    this.#lastLifeAt = performance.now()
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

  /** Re-arms the idle check for `interval` after the last sign of life (a paused socket is one). */
  #checkAgain(now: number): void {
    if (this.#hooks.isPaused()) this.#lastLifeAt = now
    const due = this.#lastLifeAt + this.#options.interval - now
    this.#rearm(this.#onIdleCheck, Math.max(1, Math.ceil(due)))
  }

  readonly #onIdleCheck = (): void => {
    const now = performance.now()
    // Timers may fire a fraction of a millisecond early against this clock: allow for it.
    if (now - this.#lastLifeAt < this.#options.interval - 1 || this.#hooks.isPaused()) {
      this.#checkAgain(now)
      return
    }
    this.#pingSentAt = now
    this.#hooks.sendPing()
    this.#rearm(this.#onPingDeadline, this.#options.timeout)
  }

  readonly #onPingDeadline = (): void => {
    if (this.#lastLifeAt >= this.#pingSentAt || this.#hooks.isPaused()) {
      this.#checkAgain(performance.now())
      return
    }
    this.stop()
    this.#hooks.onTimeout()
  }
}
