/**
 * The one seam between ws-duplex and a WebSocket implementation. The engine (connection.ts)
 * talks to a SocketSeam and receives SocketHandler calls; `ws` (socket.ts) and WHATWG
 * WebSockets (whatwg-socket.ts) each implement it, with what their platform can do.
 *
 * Memory matters here: a server may hold many thousands of idle connections. So the handler is
 * one object shared by every connection (it receives the owner as its first argument).
 */
export type SocketState = 'connecting' | 'open' | 'closing' | 'closed'

/** Socket events, delivered to `owner`. One handler object serves every connection. */
export interface SocketHandler<Owner> {
  onOpen(owner: Owner): void
  onMessage(owner: Owner, data: Uint8Array, isBinary: boolean): void
  onPing(owner: Owner, data: Uint8Array): void
  onPong(owner: Owner, data: Uint8Array): void
  /** A protocol or handshake error; `onClose` always follows. */
  onError(owner: Owner, error: Error, rejectedStatus: number | undefined): void
  /** The connection is over; called exactly once, after which the seam is detached. */
  onClose(owner: Owner, code: number, reason: string): void
}

export type SendCallback = (error?: Error | null) => void

export interface SocketSeam<Owner> {
  readonly state: SocketState
  readonly isPaused: boolean
  /** Whether reading can be paused (a WHATWG WebSocket cannot). */
  readonly canPause: boolean
  /** Whether pings can be sent (a WHATWG WebSocket cannot). */
  readonly canPing: boolean
  /**
   * Whether a frame sent just before `close()` and `terminate()` still goes out. Not behind
   * ws's permessage-deflate, which compresses on another thread while terminate drops the socket.
   */
  readonly sendsSurviveTerminate: boolean
  /**
   * Bytes given to `send()` and still held in user space, not yet handed to the OS: the write
   * side's share of memory, and what backpressure measures.
   */
  readonly unsentBytes: number
  /** Starts delivering events to `handler` on behalf of `owner`; call once. */
  attach(owner: Owner, handler: SocketHandler<Owner>): void
  /**
   * Starts delivering `onPing` / `onPong` too (idempotent). Off until asked for: most
   * connections never look at control frames, and every listener costs memory per connection.
   */
  watchControlFrames(): void
  /** Stop reading from the network (the peer then feels TCP backpressure). */
  pause(): void
  resume(): void
  /** Sends one binary frame; `callback` runs once the bytes are handed to the OS. */
  send(frame: Uint8Array, callback: SendCallback): void
  ping(data: Uint8Array, callback: SendCallback): void
  /** The code `close(code)` puts on the wire (a WHATWG socket may send only 1000, 3000-4999). */
  wireCloseCode(code: number): number
  /** Starts the close handshake; code and reason must already be valid (see close-codes.ts). */
  close(code: number, reason: string): void
  /** Drops the connection at once, without a close frame. */
  terminate(): void
}
