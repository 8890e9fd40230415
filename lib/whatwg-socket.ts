/**
 * The seam over a WHATWG WebSocket: a browser's, Node's global one, undici's. The platform gives
 * less than `ws` does, and this module does the best that can be done with it:
 *
 * - Reading cannot be paused (`canPause` false): the engine bounds the read queue instead.
 * - There is no ping (`canPing` false): ping() and keepalive report ERR_UNSUPPORTED.
 * - Scripts may send only 1000 and 3000-4999 (WHATWG "close()" step 1), so the RFC 6455 codes
 *   the engine uses (1003, 1008, 1009, 1011...) go out as 4000 + (code - 1000): 4003, 4011;
 *   1001, a clean ending, goes out as 1000.
 * - There is no 'drain' event. `bufferedAmount` says how much the socket still holds, so a
 *   frame counts as sent once at most SEND_ALLOWANCE bytes are buffered after it; only while a
 *   writer waits beyond that is `bufferedAmount` sampled, on a timer that backs off.
 * - terminate() cannot drop the TCP connection: it detaches and reports 1006 at once, and the
 *   socket is left to finish (or time out) its close on its own.
 */
import { CloseCode } from './close-codes.js'
import { WsDuplexError, toError } from './errors.js'
import type { SendCallback, SocketHandler, SocketSeam, SocketState } from './seam.js'

/** The listener object form of addEventListener: one object serves all four events. */
export interface WhatwgListener {
  handleEvent(event: never): void
}

/**
 * What ws-duplex uses of a WHATWG WebSocket. The browser's `WebSocket`, Node's global one and
 * undici's all satisfy it.
 */
export interface WhatwgWebSocket {
  readonly readyState: number
  readonly bufferedAmount: number
  readonly protocol: string
  readonly url: string
  binaryType: string
  send(data: Uint8Array): void
  close(code?: number, reason?: string): void
  addEventListener(type: string, listener: WhatwgListener): void
  removeEventListener(type: string, listener: WhatwgListener): void
}

/** Bytes the socket may hold beyond the write window before a frame counts as sent. */
export const SEND_ALLOWANCE = 1024 * 1024

/** The longest wait between two samples of `bufferedAmount` while a writer is blocked. */
const MAX_POLL_MS = 32

const stateNames = ['connecting', 'open', 'closing', 'closed'] as const
const EVENTS = ['open', 'message', 'error', 'close'] as const

interface PendingSend {
  /** Total bytes given to send() once this frame was. */
  readonly end: number
  readonly callback: SendCallback
}

interface MessageEventLike {
  readonly type: 'message'
  readonly data: unknown
}

interface CloseEventLike {
  readonly type: 'close'
  readonly code: number
  readonly reason: string
  readonly wasClean: boolean
}

type SocketEvent = { readonly type: 'open' | 'error' } | MessageEventLike | CloseEventLike

const utf8 = new TextEncoder()

/** Whether `socket` looks like a WHATWG WebSocket (duck typing: there are several classes). */
export function isWhatwgWebSocket(socket: unknown): socket is WhatwgWebSocket {
  if (typeof socket !== 'object' || socket === null) return false
  const candidate = socket as Partial<Record<keyof WhatwgWebSocket, unknown>>
  return (
    typeof candidate.addEventListener === 'function' &&
    typeof candidate.removeEventListener === 'function' &&
    typeof candidate.send === 'function' &&
    typeof candidate.close === 'function' &&
    typeof candidate.readyState === 'number' &&
    typeof candidate.bufferedAmount === 'number'
  )
}

export class WhatwgSocket<Owner> implements SocketSeam<Owner>, WhatwgListener {
  readonly #ws: WhatwgWebSocket
  readonly #maxPayload: number
  #owner: Owner | undefined
  #handler: SocketHandler<Owner> | undefined
  /** Total bytes given to send(). */
  #sentBytes = 0
  #pendingSends: PendingSend[] = []
  #pollTimer: ReturnType<typeof setTimeout> | undefined
  #pollDelay = 0
  /** Set after a message over maxPayload: nothing more is delivered. */
  #refusing = false
  #detached = false

  constructor(ws: WhatwgWebSocket, maxPayload: number) {
    this.#ws = ws
    this.#maxPayload = maxPayload
    // ArrayBuffers arrive synchronously with the event; Blobs would need an async read each.
    ws.binaryType = 'arraybuffer'
  }

  get state(): SocketState {
    return this.#detached ? 'closed' : (stateNames[this.#ws.readyState] ?? 'closed')
  }

  get isPaused(): false {
    return false
  }

  get canPause(): false {
    return false
  }

  get canPing(): false {
    return false
  }

  /** What the platform has not transmitted yet: the WHATWG definition of `bufferedAmount`. */
  get unsentBytes(): number {
    return this.#ws.bufferedAmount
  }

  /** terminate() closes the socket, and the browser sends what it holds before its close frame. */
  get sendsSurviveTerminate(): true {
    return true
  }

  attach(owner: Owner, handler: SocketHandler<Owner>): void {
    this.#owner = owner
    this.#handler = handler
    for (const type of EVENTS) this.#ws.addEventListener(type, this)
  }

  /** The WHATWG API shows no control frames. */
  watchControlFrames(): void {}

  pause(): void {}

  resume(): void {}

  send(frame: Uint8Array, callback: SendCallback): void {
    try {
      this.#ws.send(frame)
    } catch (error) {
      queueMicrotask(() => callback(toError(error)))
      return
    }
    this.#sentBytes += frame.byteLength
    this.#pendingSends.push({ end: this.#sentBytes, callback })
    if (this.#pollTimer === undefined && this.#pendingSends.length === 1) {
      queueMicrotask(() => this.#confirmSends())
    }
  }

  ping(_data: Uint8Array, callback: SendCallback): void {
    queueMicrotask(() => callback(new WsDuplexError('ERR_UNSUPPORTED', 'No ping in this API')))
  }

  wireCloseCode(code: number): number {
    if (code === CloseCode.Normal || (code >= 3000 && code <= 4999)) return code
    // 1001 (going away) ends cleanly: as 1000, peers read it so; as 4001 they would see an error.
    if (code === CloseCode.GoingAway) return CloseCode.Normal
    return 4000 + code - 1000
  }

  close(code: number, reason: string): void {
    this.#ws.close(this.wireCloseCode(code), reason)
  }

  terminate(): void {
    if (this.#detached) return
    const ws = this.#ws
    if (ws.readyState === 0) ws.close()
    else if (ws.readyState === 1) ws.close(this.wireCloseCode(CloseCode.InternalError), '')
    const handler = this.#handler
    const owner = this.#owner as Owner
    const unsent = this.#detach()
    // Like ws's terminate(): the close is reported asynchronously, with 1006.
    queueMicrotask(() => {
      handler?.onClose(owner, CloseCode.Abnormal, '')
      failSends(unsent)
    })
  }

  /** The one listener for every event of the socket (EventListener object form). */
  handleEvent(event: SocketEvent): void {
    const handler = this.#handler
    if (handler === undefined) return
    const owner = this.#owner as Owner
    switch (event.type) {
      case 'open':
        handler.onOpen(owner)
        return
      case 'message':
        this.#onMessage(handler, owner, event.data)
        return
      case 'error':
        // The event says nothing more; the close event that follows has the code.
        handler.onError(owner, new Error('The WebSocket reported an error'), undefined)
        return
      case 'close':
        this.#onClose(handler, owner, event)
    }
  }

  #onMessage(handler: SocketHandler<Owner>, owner: Owner, data: unknown): void {
    if (this.#refusing) return
    let bytes: Uint8Array
    const isBinary = typeof data !== 'string'
    if (typeof data === 'string') bytes = utf8.encode(data)
    else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data)
    else if (ArrayBuffer.isView(data)) {
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    } else return
    if (bytes.length > this.#maxPayload) {
      // The platform has already received it; what the limit can still do is end the stream.
      this.#refusing = true
      const closeCode = this.wireCloseCode(CloseCode.MessageTooBig)
      handler.onError(
        owner,
        new WsDuplexError('ERR_PAYLOAD_TOO_LARGE', 'An incoming message exceeded maxPayload', {
          closeCode
        }),
        undefined
      )
      if (this.#ws.readyState === 1) this.#ws.close(closeCode, '')
      return
    }
    handler.onMessage(owner, bytes, isBinary)
  }

  #onClose(handler: SocketHandler<Owner>, owner: Owner, event: CloseEventLike): void {
    // A close frame followed by an unclean TCP ending (wasClean false) is not a clean end.
    if (!event.wasClean && event.code !== CloseCode.Abnormal) {
      handler.onError(
        owner,
        new WsDuplexError('ERR_ABNORMAL_CLOSURE', 'The connection did not close cleanly', {
          closeCode: event.code
        }),
        undefined
      )
    }
    const unsent = this.#detach()
    handler.onClose(owner, event.code, event.reason)
    // After the close, as ws does: the connection's outcome is already decided by then.
    failSends(unsent)
  }

  /**
   * Confirms every frame with at most SEND_ALLOWANCE bytes buffered after it, then samples
   * again later only if some frame is still waiting: 1 ms, doubling to MAX_POLL_MS while
   * nothing moves, back to 1 ms when something did.
   */
  #confirmSends(): void {
    this.#pollTimer = undefined
    if (this.#detached) return
    const confirmable = this.#sentBytes - this.#ws.bufferedAmount + SEND_ALLOWANCE
    const pending = this.#pendingSends
    let confirmed = 0
    while (confirmed < pending.length && (pending[confirmed] as PendingSend).end <= confirmable) {
      confirmed++
    }
    const done = pending.splice(0, confirmed)
    for (const { callback } of done) callback()
    if (pending.length === 0) {
      this.#pollDelay = 0
      return
    }
    this.#pollDelay = confirmed > 0 ? 1 : Math.min(Math.max(1, this.#pollDelay * 2), MAX_POLL_MS)
    this.#pollTimer = setTimeout(() => this.#confirmSends(), this.#pollDelay)
  }

  /** Stops listening; returns the sends never confirmed. */
  #detach(): PendingSend[] {
    this.#detached = true
    for (const type of EVENTS) this.#ws.removeEventListener(type, this)
    clearTimeout(this.#pollTimer)
    this.#pollTimer = undefined
    const unsent = this.#pendingSends
    this.#pendingSends = []
    this.#handler = undefined
    this.#owner = undefined
    return unsent
  }
}

function failSends(unsent: readonly PendingSend[]): void {
  if (unsent.length === 0) return
  const error = new WsDuplexError('ERR_STREAM_CLOSED', 'The WebSocket closed before this was sent')
  for (const { callback } of unsent) callback(error)
}
