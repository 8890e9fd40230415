/**
 * Keepalive: ping a quiet peer and give up on a silent one. Any incoming frame counts as life,
 * so the hot path only sets a flag; the timers sample it.
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
  #alive = false

  constructor(options: NormalizedKeepAlive, hooks: KeepAliveHooks) {
    this.#options = options
    this.#hooks = hooks
  }

  start(): void {
    if (this.#timer !== undefined) return
    this.#timer = setTimeout(this.#onIdleCheck, this.#options.interval)
    // The socket keeps the process alive while it is open; this timer alone must not.
    this.#timer.unref()
  }

  /** Called for every incoming frame: kept to one assignment. */
  sawFrame(): void {
    this.#alive = true
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

  #heardFrom(): boolean {
    const alive = this.#alive || this.#hooks.isPaused()
    this.#alive = false
    return alive
  }

  readonly #onIdleCheck = (): void => {
    if (this.#heardFrom()) {
      this.#rearm(this.#onIdleCheck, this.#options.interval)
      return
    }
    this.#hooks.sendPing()
    this.#rearm(this.#onPingDeadline, this.#options.timeout)
  }

  readonly #onPingDeadline = (): void => {
    if (this.#heardFrom()) {
      this.#rearm(this.#onIdleCheck, this.#options.interval)
      return
    }
    this.stop()
    this.#hooks.onTimeout()
  }
}
