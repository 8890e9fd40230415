/**
 * The interface every implementation under bench/impls/ exports (as its default export).
 *
 * A `Conn` is one connected stream seen through the implementation's own idiom: the workloads in
 * workloads.ts only talk to this interface, so adding an implementation is one file that maps these
 * few calls onto its API (or reuses duplexConn/itConn from adapters.ts).
 */

/** What a writer hands to `send`: sync iterables take a fast path with no await per chunk. */
export type Chunks = Iterable<Uint8Array> | AsyncIterable<Uint8Array>

/** Called for every received chunk; a returned promise pauses reading until it settles. */
export type OnChunk = (chunk: Uint8Array) => void | Promise<void>

export interface Conn {
  /**
   * Write every chunk honouring the implementation's backpressure, then end the stream gracefully.
   * Resolves once everything has been handed over and the end has been started.
   */
  send(chunks: Chunks): Promise<void>
  /** Deliver every received chunk to `onChunk`. Resolves when the peer has ended or closed. */
  receive(onChunk: OnChunk): Promise<void>
  /** Send messages with message boundaries (it-length-prefixed, or one WebSocket message each). */
  sendMessages(messages: Iterable<Uint8Array>): Promise<void>
  /** Receive the messages sent by `sendMessages`. Resolves when the peer has ended or closed. */
  receiveMessages(onMessage: (message: Uint8Array) => void): Promise<void>
  /** Write back everything received until the peer ends. */
  echo(): Promise<void>
}

export interface Listening {
  port: number
  close(): Promise<void>
}

export interface Impl {
  /** One line for the report. */
  description: string
  /** Listen on 127.0.0.1, port 0; `onConnection` gets every accepted, open connection. */
  listen(onConnection: (conn: Conn) => void): Promise<Listening>
  /** Connect to 127.0.0.1:`port`; resolves once the connection is open. */
  connect(port: number): Promise<Conn>
}
