/**
 * The one seam between ws-duplex and a WebSocket implementation. Everything above it (the
 * Duplex face, the source/sink face, keepalive, close handling) talks to a SocketSeam and
 * receives SocketHandler calls, so another WebSocket (a WHATWG one) can slot in by
 * implementing this interface.
 */
import type { IncomingMessage } from 'node:http'
import { WebSocket } from 'ws'

export type SocketState = 'connecting' | 'open' | 'closing' | 'closed'

export interface SocketHandler {
  onOpen(): void
  onMessage(data: Buffer, isBinary: boolean): void
  onPing(data: Buffer): void
  onPong(data: Buffer): void
  /** A protocol or handshake error; `onClose` always follows. */
  onError(error: Error, rejectedStatus: number | undefined): void
  /** The connection is over; called exactly once, after which the seam is detached. */
  onClose(code: number, reason: string): void
}

export type SendCallback = (error?: Error | null) => void

export interface SocketSeam {
  readonly state: SocketState
  readonly isPaused: boolean
  /** Starts delivering events to `handler`; call once. */
  attach(handler: SocketHandler): void
  /** Stop reading from the network (the peer then feels TCP backpressure). */
  pause(): void
  resume(): void
  /** Sends one binary frame; `callback` runs once the bytes are handed to the OS. */
  send(frame: Buffer, callback: SendCallback): void
  ping(data: Buffer, callback: SendCallback): void
  /** Starts the close handshake; code and reason must already be valid (see close-codes.ts). */
  close(code: number, reason: string): void
  /** Drops the connection at once, without a close frame. */
  terminate(): void
}

const stateNames = ['connecting', 'open', 'closing', 'closed'] as const

/**
 * `send()` options reused for every frame. ws compresses only when permessage-deflate was
 * negotiated (off unless the user asked for it), so `compress` is left to it.
 */
const BINARY_FRAME = { binary: true } as const

/** The seam over a `ws` WebSocket, client or server side. */
export class NodeWsSocket implements SocketSeam {
  readonly #ws: WebSocket
  #handler: SocketHandler | undefined
  #rejectedStatus: number | undefined

  constructor(ws: WebSocket) {
    this.#ws = ws
    // Bytes arrive as Buffers whatever the caller had chosen; ArrayBuffers or fragment arrays
    // would cost a copy or a concat per message.
    ws.binaryType = 'nodebuffer'
  }

  get state(): SocketState {
    return stateNames[this.#ws.readyState] ?? 'closed'
  }

  get isPaused(): boolean {
    return this.#ws.isPaused
  }

  attach(handler: SocketHandler): void {
    this.#handler = handler
    const ws = this.#ws
    ws.on('open', this.#onOpen)
    ws.on('message', this.#onMessage)
    ws.on('ping', this.#onPing)
    ws.on('pong', this.#onPong)
    ws.on('error', this.#onError)
    ws.on('close', this.#onClose)
    if (ws.readyState === WebSocket.CONNECTING) ws.on('unexpected-response', this.#onRejected)
    // A socket handed over already closed still owes its owner exactly one onClose.
    if (ws.readyState === WebSocket.CLOSED)
      queueMicrotask(() => this.#onClose(1006, Buffer.alloc(0)))
  }

  pause(): void {
    this.#ws.pause()
  }

  resume(): void {
    this.#ws.resume()
  }

  send(frame: Buffer, callback: SendCallback): void {
    this.#ws.send(frame, BINARY_FRAME, callback)
  }

  ping(data: Buffer, callback: SendCallback): void {
    this.#ws.ping(data, undefined, callback)
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason)
  }

  terminate(): void {
    this.#ws.terminate()
  }

  #detach(): void {
    const ws = this.#ws
    ws.off('open', this.#onOpen)
    ws.off('message', this.#onMessage)
    ws.off('ping', this.#onPing)
    ws.off('pong', this.#onPong)
    ws.off('error', this.#onError)
    ws.off('close', this.#onClose)
    ws.off('unexpected-response', this.#onRejected)
  }

  // Listeners are fields holding arrow functions: created once, so they can be removed exactly.
  readonly #onOpen = (): void => {
    this.#ws.off('unexpected-response', this.#onRejected)
    this.#handler?.onOpen()
  }

  readonly #onMessage = (data: Buffer, isBinary: boolean): void => {
    this.#handler?.onMessage(data, isBinary)
  }

  readonly #onPing = (data: Buffer): void => {
    this.#handler?.onPing(data)
  }

  readonly #onPong = (data: Buffer): void => {
    this.#handler?.onPong(data)
  }

  readonly #onError = (error: Error): void => {
    this.#handler?.onError(error, this.#rejectedStatus)
  }

  readonly #onClose = (code: number, reason: Buffer): void => {
    const handler = this.#handler
    this.#detach()
    this.#handler = undefined
    handler?.onClose(code, reason.toString())
  }

  /**
   * The server answered the upgrade with something other than 101. Listening here (instead of
   * letting ws fail with a message) is the only way to learn the status; ws then leaves the
   * abort to us, and terminate() makes it emit 'error' and 'close' as usual.
   */
  readonly #onRejected = (_request: unknown, response: IncomingMessage): void => {
    this.#rejectedStatus = response.statusCode
    response.resume()
    this.#ws.terminate()
  }
}
