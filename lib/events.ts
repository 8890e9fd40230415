/**
 * The out-of-band channel (`d.events`): what happens on the connection that is not bytes.
 * It has no `'error'` event, so emitting with nobody listening never throws; what ends the
 * stream is the stream's own `'error'`.
 */
import { EventEmitter } from 'node:events'
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

export class DuplexEvents extends EventEmitter<WsDuplexEvents> {}
