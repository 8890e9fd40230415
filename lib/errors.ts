/**
 * Every error ws-duplex reports, fatal (the stream's `'error'`, a rejected promise) or not
 * (`d.events` `'warning'`), is a WsDuplexError with a stable `code`. Tests and users match on
 * `code`, never on `message`.
 */

/** The stable error codes; each one is documented in the README. */
export type WsDuplexErrorCode =
  /** A text frame arrived while the `text` option is `'error'` or `'ignore'`. */
  | 'ERR_TEXT_FRAME'
  /** The connection ended without a close frame from the peer (close code 1006). */
  | 'ERR_ABNORMAL_CLOSURE'
  /** The peer closed with a code other than 1000, 1001 or 1005 (e.g. 1011). */
  | 'ERR_PEER_CLOSED_WITH_ERROR'
  /** Our close frame got no answer within `closeTimeout`. */
  | 'ERR_CLOSE_TIMEOUT'
  /** No frame arrived within `keepAlive.timeout` after a ping. */
  | 'ERR_KEEPALIVE_TIMEOUT'
  /** An incoming message was larger than `maxPayload`; closed with 1009. */
  | 'ERR_PAYLOAD_TOO_LARGE'
  /**
   * The peer broke RFC 6455 (bad opcode, mask, UTF-8, close code...) or a limit of ws's; closed
   * with 1002, 1007 (also for a message that does not inflate) or 1008 (too many fragments).
   */
  | 'ERR_PROTOCOL'
  /** A write, ping or sink after the connection started closing or closed. */
  | 'ERR_STREAM_CLOSED'
  /** The Duplex face and the source/sink face were both used on one side. */
  | 'ERR_FACE_CONFLICT'
  /** The TCP or TLS connection could not be made (refused, unreachable, TLS failure). */
  | 'ERR_CONNECT_FAILED'
  /** The server answered the upgrade request with an HTTP status other than 101. */
  | 'ERR_HANDSHAKE_REJECTED'
  /** The opening handshake did not complete within `timeout` / `handshakeTimeout`. */
  | 'ERR_CONNECT_TIMEOUT'
  /** The AbortSignal given to `connect()` fired. */
  | 'ERR_ABORTED'
  /** The socket failed while sending (the peer vanished mid-write). */
  | 'ERR_SEND_FAILED'
  /** Over a WHATWG WebSocket (cannot pause): the reader fell `maxReadBuffer` bytes behind. */
  | 'ERR_READ_OVERFLOW'
  /** Something the WebSocket cannot do: ping() or keepAlive over a WHATWG WebSocket. */
  | 'ERR_UNSUPPORTED'

export interface WsDuplexErrorDetails {
  /** The close code of the close frame involved, sent or received (1006 when there was none). */
  closeCode?: number
  /** The HTTP status of a refused opening handshake. */
  status?: number
  cause?: unknown
}

const brand = Symbol.for('ws-duplex.WsDuplexError')

export class WsDuplexError extends Error {
  readonly code: WsDuplexErrorCode
  readonly closeCode: number | undefined
  readonly status: number | undefined

  constructor(code: WsDuplexErrorCode, message: string, details: WsDuplexErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'WsDuplexError'
    this.code = code
    this.closeCode = details.closeCode
    this.status = details.status
  }

  /** Branded so `instanceof` holds across two installed copies of the package (undici's trick). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && brand in value
  }

  get [brand](): true {
    return true
  }
}

/** Turns a thrown or emitted value into an Error, for causes that arrive as `unknown`. */
export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

/** connect() gave up because its AbortSignal fired. */
export function abortedError(signal: AbortSignal | undefined): WsDuplexError {
  return new WsDuplexError('ERR_ABORTED', 'connect() was aborted', { cause: signal?.reason })
}

/** connect() gave up waiting for the opening handshake. */
export function connectTimeoutError(ms: number): WsDuplexError {
  return new WsDuplexError('ERR_CONNECT_TIMEOUT', `The connection did not open within ${ms} ms`)
}
