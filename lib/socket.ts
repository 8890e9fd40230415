/**
 * The seam over a `ws` WebSocket, client or server side.
 *
 * The listeners are module functions shared by every socket, not closures made per connection:
 * a server may hold many thousands of idle connections.
 */
import type { IncomingMessage } from 'node:http'
import { WebSocket } from 'ws'
import type { SendCallback, SocketHandler, SocketSeam, SocketState } from './seam.js'

const stateNames = ['connecting', 'open', 'closing', 'closed'] as const

/**
 * `send()` options reused for every frame. ws compresses only when permessage-deflate was
 * negotiated (off unless the user asked for it), so `compress` is left to it.
 */
const BINARY_FRAME = { binary: true } as const

/** Where a ws socket keeps the seam that listens to it (ws marks its net socket the same way). */
const kSeam = Symbol('ws-duplex.seam')

type MarkedWebSocket = WebSocket & { [kSeam]?: NodeWsSocket<unknown> }

// Set by the static block in NodeWsSocket, which alone may touch its private members.
type SeamEvent = 'open' | 'message' | 'ping' | 'pong' | 'error' | 'close'
let deliver: (seam: NodeWsSocket<unknown>, event: SeamEvent, a?: unknown, b?: unknown) => void
let rejected: (seam: NodeWsSocket<unknown>, status: number | undefined) => void

/** The seam over a `ws` WebSocket, client or server side. */
export class NodeWsSocket<Owner> implements SocketSeam<Owner> {
  readonly #ws: WebSocket
  #owner: Owner | undefined
  #handler: SocketHandler<Owner> | undefined
  #rejectedStatus: number | undefined
  #watchingControlFrames = false

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

  get canPause(): true {
    return true
  }

  get canPing(): true {
    return true
  }

  /** The net socket's write buffer plus what ws's sender holds (frames waiting on deflate). */
  get unsentBytes(): number {
    return this.#ws.bufferedAmount
  }

  get sendsSurviveTerminate(): boolean {
    // Without compression ws writes each frame to the net socket before send() returns.
    return !this.#ws.extensions.includes('permessage-deflate')
  }

  wireCloseCode(code: number): number {
    return code
  }

  attach(owner: Owner, handler: SocketHandler<Owner>): void {
    this.#owner = owner
    this.#handler = handler
    const ws = this.#ws as MarkedWebSocket
    ws[kSeam] = this
    // ws keeps listeners in a dictionary sized by the most event names it ever held at once, so
    // each name costs memory for the rest of an idle connection's life. No more than three at a
    // time (five once ping/pong are watched): until the handshake ends, only what it can end
    // with. 'message' cannot come yet, and ws reports every failed handshake as 'error' then
    // 'close', so 'close' can wait for the error.
    ws.on('error', wsOnError)
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.on('open', wsOnOpen)
      ws.on('unexpected-response', wsOnRejected)
    } else {
      this.#listenWhileOpen()
    }
  }

  #listenWhileOpen(): void {
    const ws = this.#ws
    ws.on('message', wsOnMessage)
    ws.on('close', wsOnClose)
  }

  watchControlFrames(): void {
    if (this.#watchingControlFrames || this.#handler === undefined) return
    this.#watchingControlFrames = true
    const ws = this.#ws
    ws.on('ping', wsOnPing)
    ws.on('pong', wsOnPong)
  }

  pause(): void {
    this.#ws.pause()
  }

  resume(): void {
    this.#ws.resume()
  }

  send(frame: Uint8Array, callback: SendCallback): void {
    this.#ws.send(frame, BINARY_FRAME, callback)
  }

  ping(data: Uint8Array, callback: SendCallback): void {
    this.#ws.ping(data, undefined, callback)
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason)
  }

  terminate(): void {
    this.#ws.terminate()
  }

  static {
    // The shared listeners below reach each seam's private state through these.
    deliver = (seam, event, a, b) => {
      const handler = seam.#handler
      const owner = seam.#owner
      if (handler === undefined) return
      switch (event) {
        case 'open':
          seam.#ws.off('open', wsOnOpen)
          seam.#ws.off('unexpected-response', wsOnRejected)
          seam.#listenWhileOpen()
          handler.onOpen(owner)
          return
        case 'message':
          handler.onMessage(owner, a as Buffer, b as boolean)
          return
        case 'ping':
          handler.onPing(owner, a as Buffer)
          return
        case 'pong':
          handler.onPong(owner, a as Buffer)
          return
        case 'error':
          // A failed handshake: ws emits 'close' right after this returns.
          if (seam.#ws.listenerCount('close', wsOnClose) === 0) seam.#ws.on('close', wsOnClose)
          handler.onError(owner, a as Error, seam.#rejectedStatus)
          return
        case 'close':
          seam.#detach()
          handler.onClose(owner, a as number, (b as Buffer).toString())
      }
    }
    rejected = (seam, status) => {
      seam.#rejectedStatus = status
    }
  }

  #detach(): void {
    const ws = this.#ws as MarkedWebSocket
    ws.off('open', wsOnOpen)
    ws.off('message', wsOnMessage)
    ws.off('ping', wsOnPing)
    ws.off('pong', wsOnPong)
    ws.off('error', wsOnError)
    ws.off('close', wsOnClose)
    ws.off('unexpected-response', wsOnRejected)
    ws[kSeam] = undefined
    this.#handler = undefined
    this.#owner = undefined
  }
}

function seamOf(ws: WebSocket): NodeWsSocket<unknown> | undefined {
  return (ws as MarkedWebSocket)[kSeam]
}

function wsOnOpen(this: WebSocket): void {
  const seam = seamOf(this)
  if (seam) deliver(seam, 'open')
}

function wsOnMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  const seam = seamOf(this)
  if (seam) deliver(seam, 'message', data, isBinary)
}

function wsOnPing(this: WebSocket, data: Buffer): void {
  const seam = seamOf(this)
  if (seam) deliver(seam, 'ping', data)
}

function wsOnPong(this: WebSocket, data: Buffer): void {
  const seam = seamOf(this)
  if (seam) deliver(seam, 'pong', data)
}

function wsOnError(this: WebSocket, error: Error): void {
  const seam = seamOf(this)
  if (seam) deliver(seam, 'error', error)
}

function wsOnClose(this: WebSocket, code: number, reason: Buffer): void {
  const seam = seamOf(this)
  if (seam) deliver(seam, 'close', code, reason)
}

/**
 * The server answered the upgrade with something other than 101. Listening here (instead of
 * letting ws fail with a message) is the only way to learn the status; ws then leaves the
 * abort to us, and terminate() makes it emit 'error' and 'close' as usual.
 */
function wsOnRejected(this: WebSocket, _request: unknown, response: IncomingMessage): void {
  const seam = seamOf(this)
  if (seam) rejected(seam, response.statusCode)
  response.resume()
  this.terminate()
}
