/**
 * The engine under every face: one WebSocket connection carrying bytes. It owns the send queue,
 * the close handshake (RFC 6455 §7), the text policy, keepalive, pings and the rule that a fatal
 * error waits for the bytes that arrived before it. It knows nothing of Node streams or of which
 * WebSocket it drives: a face (the Node Duplex, the platform-neutral source/sink stream) plugs in
 * through `ConnectionFace`, a WebSocket (ws, WHATWG) through `SocketSeam`.
 */
import { CloseCode, assertCloseArguments, isCleanCloseCode } from './close-codes.js'
import { WsDuplexError } from './errors.js'
import type { CloseInfo, EventSink } from './events.js'
import { KeepAlive } from './keepalive.js'
import type { NormalizedOptions } from './options.js'
import { SendQueue, type FrameSink } from './send-queue.js'
import type { SendCallback, SocketHandler, SocketSeam, SocketState } from './seam.js'
import { errorFromSocket } from './socket-errors.js'

/** What the engine needs from the face the user holds. */
export interface ConnectionFace {
  /** Makes the face's typed events emitter (asked for on first use of `events`). */
  makeEvents(): EventSink
  /** A binary message for the reader; false when its buffer is at the high water mark. */
  deliver(data: Uint8Array): boolean
  /** Bytes delivered to the face and not yet read. */
  readonly unreadBytes: number
  /** The send queue may have room again (a frame was flushed, or the socket opened). */
  writable(): void
  /** `close()` was called: end the write side (flush, then our close frame via `finish`). */
  endWriting(): void
  /** The connection is over; `error` is how it ended when it did not end cleanly. */
  connectionClosed(error: WsDuplexError | undefined): void
  /** The connection is over and ended with `error`: end the face once its reader is done. */
  surfaceFatal(error: WsDuplexError): void
  /** A clean close: release waiting writers (then `finished`) and end the read side. */
  cleanEnd(finished: (() => void) | undefined): void
}

interface PendingPing {
  readonly payload: Uint8Array
  readonly startedAt: number
  readonly resolve: (rttMs: number) => void
  readonly reject: (error: Error) => void
}

type Timer = ReturnType<typeof setTimeout>

/** RFC 6455 §5.5: control frames, pings included, carry at most 125 bytes. */
export const MAX_PING_BYTES = 125

// Set by the static block in Connection, which alone may touch its private members.
let socketHandler: SocketHandler<Connection>
let frameSink: FrameSink<Connection>
let closeTimerFired: (connection: Connection) => void
let flushTimerFired: (connection: Connection) => void
let lingerTimerFired: (connection: Connection) => void

export class Connection {
  readonly #seam: SocketSeam<Connection>
  readonly #face: ConnectionFace
  readonly #options: NormalizedOptions
  /** Made on the first write: an idle connection holds no send queue. */
  #queue: SendQueue<Connection> | undefined
  /** Made on first use: most connections never look at their events. */
  #events: EventSink | undefined
  readonly #keepAlive: KeepAlive | undefined

  #opened: boolean
  /** A sink waiting for room in the send queue (both faces' sinks wait here). */
  #roomWaiter: { resolve: () => void; reject: (error: Error) => void } | undefined
  /** The face's end-of-writing callback: for every byte to reach the OS, then a clean end. */
  #heldFinish: ((error?: Error | null) => void) | undefined
  /** Every written byte went out and the close began: #heldFinish waits for the end. */
  #finishAwaitsEnd = false
  /**
   * Set by release(), which lets go of the connection: what to call once the socket reports it
   * is closed (a no-op once called).
   */
  #released: (() => void) | undefined
  /** A write came while closing; its error waits for the connection's end. */
  #writeRefused = false
  /** Whether release() was given a failure (destroy(err)), which makes no ending clean. */
  #releasedWithFailure = false
  /** What ending the write side sends, once `close(code, reason)` asked; 1000 until then. */
  #closeRequest: { readonly code: number; readonly reason: string } | undefined
  /** The code of the close frame we asked for, once we sent one. */
  #sentCloseCode: number | undefined
  #closeTimer: Timer | undefined
  /** Our close timer cut the connection; it is an error unless the peer's close frame came. */
  #closeTimedOut = false
  /** Reading is paused while connect() or a server loop hands the duplex over. */
  #readingHeld = false
  /** Set whenever a frame is flushed; close() treats a flush without it for a while as stalled. */
  #flushedSinceCheck = false
  /** A fatal error waiting for the reader to take the bytes that arrived before it. */
  #fatal: WsDuplexError | undefined
  /** The first error the socket reported; the close turns it into a coded error. */
  #socketError: { error: Error; rejectedStatus: number | undefined } | undefined
  /** Set once the connection is over. */
  #closeInfo: CloseInfo | undefined
  #closeWaiters: ((info: CloseInfo) => void)[] | undefined
  #pings: PendingPing[] | undefined
  /** A frame went into a socket that still held bytes: its completion means the peer read. */
  #sentIntoBacklog = false

  constructor(seam: SocketSeam<Connection>, face: ConnectionFace, options: NormalizedOptions) {
    this.#seam = seam
    this.#face = face
    this.#options = options
    this.#opened = seam.state === 'open'
    this.#keepAlive =
      options.keepAlive === undefined || !seam.canPing
        ? undefined
        : new KeepAlive(options.keepAlive, {
            isPaused: () => this.#seam.isPaused,
            // Numbered like ping()'s own, so its pong can never answer a user's (empty) ping.
            sendPing: () => this.#seam.ping(pingPayload(++pingSequence), ignoreSendResult),
            onTimeout: () => this.#onKeepAliveTimeout()
          })
    seam.attach(this, socketHandler)
    // Keepalive counts every frame as life, pongs and pings included.
    if (this.#keepAlive !== undefined) seam.watchControlFrames()
    if (this.#opened) this.#keepAlive?.start()
    if (this.#opened) this.#reportMissingKeepAlive()
  }

  /**
   * keepAlive over a socket that cannot ping is reported, not thrown (the same options may serve
   * a ws socket and a WHATWG one). On a timer after the open, so that a listener added once
   * connect() resolves still hears it.
   */
  #reportMissingKeepAlive(): void {
    if (this.#options.keepAlive === undefined || this.#seam.canPing) return
    setTimeout(() => {
      // 'close' is the last event: a stream over by now has nothing left to warn about.
      if (this.#closeInfo !== undefined) return
      this.#events?.emit(
        'warning',
        new WsDuplexError('ERR_UNSUPPORTED', 'keepAlive needs pings, which this WebSocket lacks')
      )
    }, 0)
  }

  get events(): EventSink {
    if (this.#events === undefined) {
      this.#events = this.#face.makeEvents()
      // 'ping' and 'pong' events: only worth listening for once someone may listen to them.
      this.#seam.watchControlFrames()
    }
    return this.#events
  }

  /** Whether `events` was asked for yet (emitting to nobody costs nothing then). */
  get hasEvents(): boolean {
    return this.#events !== undefined
  }

  get state(): SocketState {
    return this.#seam.state
  }

  get opened(): boolean {
    return this.#opened
  }

  get closeTimeout(): number {
    return this.#options.closeTimeout
  }

  get closeInfo(): CloseInfo | undefined {
    return this.#closeInfo
  }

  get fatal(): WsDuplexError | undefined {
    return this.#fatal
  }

  /** Whether the face waits for the write side to finish. */
  get finishing(): boolean {
    return this.#heldFinish !== undefined
  }

  /** Whether a write may be accepted now without passing the high water mark. */
  get hasRoom(): boolean {
    // What the socket still holds, but never more than our sends still due a callback: the
    // socket's count may include ws's own pongs, which no callback of ours would ever wake.
    const queue = this.#queue
    if (queue === undefined) return this.#opened
    const unsent = Math.min(this.#seam.unsentBytes, queue.inFlightBytes)
    return this.#opened && queue.queuedBytes + unsent < this.#options.writableHighWaterMark
  }

  /** The code of our close frame, or the peer's once the connection is over. */
  get lastCloseCode(): number | undefined {
    return this.#closeInfo?.code ?? this.#sentCloseCode
  }

  // ----------------------------------------------------------------------------- writing

  #sendQueue(): SendQueue<Connection> {
    if (this.#queue !== undefined) return this.#queue
    const queue = new SendQueue(this.#options.maxFrameSize, this as Connection, frameSink)
    // Writes made while connecting wait for the open (release()).
    if (!this.#opened) queue.hold()
    this.#queue = queue
    return queue
  }

  /** Queues bytes to send: full frames go at once, the rest is merged and sent on the next tick. */
  /** Queues a chunk; returns its end's position in the stream (see `sentBytes`). */
  push(chunk: Uint8Array): number {
    const queue = this.#sendQueue()
    queue.push(chunk)
    return queue.pushedTotal
  }

  /** Every byte pushed before this position has been handed to the OS: the caller's memory is free. */
  get sentBytes(): number {
    return this.#queue?.sentTotal ?? 0
  }

  /**
   * Whether every byte pushed is in the kernel already: nothing queued here, nothing held by
   * the socket in user space (a write the kernel took at once), though the send callbacks,
   * which come a tick later, have not run yet.
   */
  get allInKernel(): boolean {
    return this.#opened && (this.#queue?.queuedBytes ?? 0) === 0 && this.#seam.unsentBytes === 0
  }

  /** Whether the socket still takes writes; a write after the close started is a stream error. */
  get acceptsWrites(): boolean {
    const state = this.#seam.state
    return state === 'open' || state === 'connecting'
  }

  /** Resolves once the send queue is under the high water mark; rejects if the stream ends. */
  whenRoom(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#roomWaiter = { resolve, reject }
      this.#wakeRoomWaiter()
    })
  }

  #wakeRoomWaiter(): void {
    const waiter = this.#roomWaiter
    // After a refused write the waiter only learns how the connection ended.
    if (waiter === undefined || !this.hasRoom || this.#writeRefused) return
    this.#roomWaiter = undefined
    waiter.resolve()
  }

  #failRoomWaiter(error: Error): void {
    const waiter = this.#roomWaiter
    this.#roomWaiter = undefined
    waiter?.reject(error)
  }

  /**
   * Fails the stream because a write came after the close started. While the connection is
   * still closing, the error waits for its end (at most `closeTimeout`): a reset or the peer's
   * 1011 says more about why the write failed than "closed" does.
   */
  refuseWrite(): void {
    if (this.#closeInfo === undefined && this.#fatal === undefined) {
      this.#writeRefused = true
      if (this.#closeTimer === undefined) this.#awaitEnding()
      return
    }
    this.fail(closedError(this.lastCloseCode), 'none')
    // Already failed (the error waiting for unread bytes): this write is now blocked on it.
    this.#maybeSurfaceFatal()
  }

  /**
   * A sink's chunk after the close started: over, it throws how the connection ended; still
   * closing, the chunk is refused and `whenRoom()` rejects once the ending is known.
   */
  refuseSinkChunk(): false {
    if (this.#closeInfo !== undefined || this.#fatal !== undefined) {
      throw this.#fatal ?? closedError(this.lastCloseCode)
    }
    this.refuseWrite()
    return false
  }

  /**
   * The face's write side ended: flush, send our close frame, then call `callback` once the
   * connection has ended cleanly, or with the error that ended it.
   */
  finish(callback: (error?: Error | null) => void): void {
    this.#heldFinish = callback
    this.#queue?.flush()
    this.#maybeFinish()
    // An error waiting for unread bytes would hold this callback forever: it must surface now.
    if (this.#fatal !== undefined) this.#maybeSurfaceFatal()
  }

  #sendFrame(frame: Uint8Array, callback: SendCallback): void {
    this.#seam.send(frame, callback)
    if (this.#seam.unsentBytes > 0) {
      if (this.#keepAlive !== undefined) this.#sentIntoBacklog = true
    } else if (this.#queue?.queuedBytes === 0) {
      // The kernel took everything at once: a writer waiting for its bytes to be flushed need
      // not wait for the send callback's tick (a writer of large chunks runs on in one loop).
      this.#face.writable()
    }
  }

  #frameSent(error: Error | null | undefined): void {
    if (error) {
      if (this.#closeInfo !== undefined || this.#fatal !== undefined) return
      if (this.#released !== undefined) return
      if (this.#seam.state === 'open') {
        this.fail(
          new WsDuplexError('ERR_SEND_FAILED', 'A frame could not be sent', { cause: error }),
          'terminate'
        )
        return
      }
      // Refused because the connection is closing (the peer's close frame came, or TCP is
      // going): how it ends (the peer's 1011, a reset) says more than "closed", as for a
      // write refused after the close started.
      this.#writeRefused = true
      if (this.#closeTimer === undefined) this.#awaitEnding()
      return
    }
    this.#flushedSinceCheck = true
    // Taken after waiting behind a backlog (or with more waiting): the kernel made room, so the
    // peer is reading (see keepalive.ts). A frame the kernel took at once proves nothing.
    if (this.#keepAlive !== undefined) {
      const backlog = this.#seam.unsentBytes > 0
      if (backlog || this.#sentIntoBacklog) this.#keepAlive.sawDrain()
      this.#sentIntoBacklog = backlog
    }
    this.#face.writable()
    this.#wakeRoomWaiter()
    this.#maybeFinish()
    if (this.#closeRequest !== undefined) this.#boundFlush()
  }

  /** After the write side ended: once every byte is handed to the OS, send our close (§5.5.1). */
  #maybeFinish(): void {
    const callback = this.#heldFinish
    if (callback === undefined || this.#fatal !== undefined || this.#finishAwaitsEnd) return
    if (this.#closeInfo !== undefined) {
      // Over, and cleanly (a failure is fatal): nothing is left to flush or to wait for.
      this.#heldFinish = undefined
      callback()
      return
    }
    if (!this.#opened || (this.#queue?.pendingBytes ?? 0) > 0) return
    const request = this.#closeRequest
    this.#startClose(request?.code ?? CloseCode.Normal, request?.reason ?? '')
    // The write side is done only once the connection has ended cleanly: until then a 1011 or
    // a reset can still say the transfer failed, which 'finish' (and a sink) must not hide.
    this.#finishAwaitsEnd = true
  }

  // ------------------------------------------------------------------------------ reading

  /** The reader took bytes: read from the network again. */
  resumeReading(): void {
    if (this.#seam.isPaused) this.#seam.resume()
  }

  /**
   * Reads nothing until the next turn of the event loop. Frames that came in the same TCP read
   * as the handshake would fire their events ('ping', 'warning'...) before an `await`ing caller
   * holds the duplex: their bytes would wait for it, their events would be lost.
   */
  holdReadingForOneTurn(): void {
    if (!this.#seam.canPause || this.#seam.isPaused) return
    this.#seam.pause()
    this.#readingHeld = true
    setImmediate(() => {
      // Unless a full read buffer paused reading meanwhile: then the reader resumes it.
      if (this.#readingHeld) this.resumeReading()
    })
  }

  /** The reader took bytes; a fatal error waiting for them may now end the face. */
  readerProgressed(): void {
    if (this.#fatal !== undefined && this.#closeInfo !== undefined) this.#maybeSurfaceFatal()
  }

  // ------------------------------------------------------------------------ close, ping

  /**
   * Graceful close: the face's write side ends (every written byte flushed), a close frame with
   * `code` follows, and the promise resolves once the connection is over (at once when it
   * already is). Flushing and the handshake are each bounded by `closeTimeout`.
   */
  close(code: number = CloseCode.Normal, reason = ''): Promise<CloseInfo> {
    assertCloseArguments(code, reason)
    if (this.#closeInfo !== undefined) return Promise.resolve(this.#closeInfo)
    const result = new Promise<CloseInfo>((resolve) => (this.#closeWaiters ??= []).push(resolve))
    // The first close() names the code: a later one (server.close()'s 1001 after the
    // application's own 4000, say) waits for the same ending rather than rewriting it.
    if (this.#sentCloseCode === undefined) this.#closeRequest ??= { code, reason }
    this.#face.endWriting()
    this.#boundFlush()
    return result
  }

  /**
   * Bounds close()'s flush: a peer that stops reading must not hold the close forever. A slow
   * peer that still reads is fine: only a whole closeTimeout without progress counts. (end()'s
   * flush is not bounded, as with net.Socket: a writer waits for a slow reader.)
   */
  #boundFlush(): void {
    if (this.#sentCloseCode !== undefined || this.#closeTimer !== undefined) return
    if (this.#closeInfo !== undefined) return
    // Still connecting: the handshake has its own bound (handshakeTimeout); the flush is timed
    // from the open, or a slow handshake would look like a peer that stopped reading.
    if (!this.#opened) return
    this.#flushedSinceCheck = false
    this.#closeTimer = setTimeout(flushTimerFired, this.#options.closeTimeout, this)
  }

  /** Sends a ping; resolves with the round-trip time in ms when its pong arrives. */
  ping(data?: Uint8Array): Promise<number> {
    if (data !== undefined && !(data instanceof Uint8Array)) {
      return Promise.reject(new TypeError('Expected `data` to be a Uint8Array'))
    }
    if (data !== undefined && data.length > MAX_PING_BYTES) {
      return Promise.reject(
        new RangeError(
          `Expected \`data\` to be at most ${MAX_PING_BYTES} bytes, got ${data.length}`
        )
      )
    }
    if (!this.#seam.canPing) {
      return Promise.reject(
        new WsDuplexError('ERR_UNSUPPORTED', 'This WebSocket cannot send pings (WHATWG API)')
      )
    }
    if (this.#seam.state !== 'open' || this.#released !== undefined) {
      return Promise.reject(closedError(this.lastCloseCode))
    }
    this.#seam.watchControlFrames()
    // A copy made now, to match the pong against: Buffer#slice() would be a view of memory
    // the caller may reuse.
    const payload =
      data === undefined ? pingPayload(++pingSequence) : Uint8Array.prototype.slice.call(data)
    return new Promise((resolve, reject) => {
      const ping: PendingPing = { payload, startedAt: performance.now(), resolve, reject }
      ;(this.#pings ??= []).push(ping)
      this.#seam.ping(payload, (error) => {
        if (!error) return
        this.#pings = this.#pings?.filter((pending) => pending !== ping)
        reject(closedError(this.lastCloseCode))
      })
    })
  }

  /**
   * Lets go of the connection at once (destroy): pending finish and pings fail with `failure`,
   * the bytes written in this tick (up to one frame) and a best-effort close frame (1000 for a
   * plain stop, 1011 for a failure) go out, and the socket is terminated. `done` runs once the
   * socket reports it is closed.
   */
  release(failure: Error, isFailure: boolean, done: () => void): void {
    this.#released = done
    this.#releasedWithFailure = isFailure
    this.#stopTimers()
    this.#failRoomWaiter(failure)
    const finish = this.#heldFinish
    this.#heldFinish = undefined
    finish?.(failure)
    this.#rejectPings(failure)
    if (this.#closeInfo !== undefined) {
      this.#released = noop
      done()
      return
    }
    // The peer learns a real code rather than 1006; then terminate without waiting. Bytes written
    // just before a failure reach the peer ahead of the 1011 that reports it.
    if (this.#seam.state === 'open' && this.#sentCloseCode === undefined) {
      // Written bytes dropped here make the transfer incomplete: the peer must not see 1000.
      const dropped = this.#flushOrDiscard() > 0
      if (dropped) this.#releasedWithFailure = true
      const code = isFailure || dropped ? CloseCode.InternalError : CloseCode.Normal
      this.#sentCloseCode = code
      this.#seam.close(code, '')
      this.#emitClosing(code, '', 'local')
    }
    this.#seam.terminate()
  }

  /**
   * Before a release: what was written in this tick and not sent yet goes out ahead of the
   * close frame. That is less than one frame (full frames leave at once), unless writes piled
   * up while connecting: more could push the close frame past what reaches the kernel before
   * the terminate, and the peer would see 1006 instead, so that is dropped, as Node's
   * destroy() drops its buffered writes. Returns how many bytes were dropped.
   */
  #flushOrDiscard(): number {
    const queue = this.#queue
    if (queue === undefined) return 0
    if (queue.queuedBytes <= this.#options.maxFrameSize && this.#seam.sendsSurviveTerminate) {
      queue.flush()
      return 0
    }
    return queue.discard()
  }

  /** Sends our close frame once, if the socket is still open, and starts the close timer. */
  #startClose(code: number, reason: string): void {
    if (this.#sentCloseCode !== undefined) return
    if (this.#seam.state !== 'open') {
      // The peer started the close (ws answered it) or sent FIN: only TCP's end is left, and
      // there is nothing to flush, so a flush timer armed by close() must not judge it.
      if (this.#seam.state === 'closing') this.#awaitEnding()
      return
    }
    this.#sentCloseCode = code
    // From here the close timer watches the peer; a keepalive ping could not be answered in
    // time by a peer that is closing honestly.
    this.#keepAlive?.stop()
    // A paused socket reads nothing, so it would never see the peer's answering close frame
    // (the createWebSocketStream `_final` trap); from here on reading pauses only past
    // maxReadBuffer. The close timer keeps running (ws runs its own too): a reader that cannot
    // take what the peer sends before its answer within closeTimeout ends with the timeout.
    this.#seam.resume()
    this.#seam.close(code, reason)
    this.#emitClosing(code, reason, 'local')
    // Restart the clock: close() may have armed it to bound the flush that just finished.
    clearTimeout(this.#closeTimer)
    this.#closeTimer = setTimeout(closeTimerFired, this.#options.closeTimeout, this)
  }

  #onFlushCheck(): void {
    if (this.#flushedSinceCheck) {
      this.#flushedSinceCheck = false
      this.#closeTimer = setTimeout(flushTimerFired, this.#options.closeTimeout, this)
      return
    }
    this.#onCloseTimeout()
  }

  #onCloseTimeout(): void {
    this.#closeTimer = undefined
    // Already failing (a text frame, say) and the peer ignores our close: just let go.
    if (this.#fatal !== undefined) {
      this.#seam.terminate()
      return
    }
    if (this.#sentCloseCode === undefined) {
      // Still flushing: the bytes the peer would not take are lost, whatever it sends now.
      this.fail(this.#closeTimeoutError(), 'terminate')
      return
    }
    // Every byte went out before our close frame. A peer that answered it but keeps TCP open
    // has completed the handshake (RFC 6455 §7.1.1 leaves closing TCP to the server), so the
    // ending is judged by the code that came, if one did.
    this.#onLingerTimeout()
  }

  /**
   * Bounds the wait for a connection that is closing without a timer of ours (ws starts none
   * for a peer's FIN): at `closeTimeout` it is cut and judged by the code that came, if any.
   */
  #awaitEnding(): void {
    clearTimeout(this.#closeTimer)
    this.#closeTimer = setTimeout(lingerTimerFired, this.#options.closeTimeout, this)
  }

  #onLingerTimeout(): void {
    this.#closeTimer = undefined
    this.#closeTimedOut = true
    this.#seam.terminate()
  }

  #closeTimeoutError(): WsDuplexError {
    const ms = this.#options.closeTimeout
    return new WsDuplexError(
      'ERR_CLOSE_TIMEOUT',
      `The peer did not complete the close within ${ms} ms`,
      { closeCode: CloseCode.Abnormal }
    )
  }

  #onKeepAliveTimeout(): void {
    // Closing (maybe a close the peer started, which ws does not report before TCP ends): the
    // ending is judged by the close handshake and its own bound, not by a missing pong.
    if (this.#seam.state !== 'open') {
      if (this.#closeTimer === undefined) this.#awaitEnding()
      return
    }
    const ms = this.#options.keepAlive?.timeout ?? 0
    this.fail(
      new WsDuplexError('ERR_KEEPALIVE_TIMEOUT', `No frame arrived within ${ms} ms of a ping`, {
        closeCode: CloseCode.Abnormal
      }),
      'terminate'
    )
  }

  /**
   * A protocol error the socket found itself (RFC 6455 §7.1.7): it has sent its own close frame
   * (ws: 1002, 1007 or 1009), so our close handshake has begun, and says so with 'closing'.
   */
  #closedBySocket(error: Error, rejectedStatus: number | undefined): void {
    if (this.#sentCloseCode !== undefined) return
    const reported = errorFromSocket(error, rejectedStatus, true)
    // Only these come with a close frame of the socket's own; an unclean ending (a WHATWG
    // socket reports the peer's code with it) is the peer's close, not ours.
    if (!SOCKET_CLOSES_FOR.has(reported.code)) return
    const code = reported.closeCode
    if (code === undefined) return
    this.#sentCloseCode = code
    this.#keepAlive?.stop()
    this.#emitClosing(code, '', 'local')
  }

  /**
   * Once per connection: callers emit it only before any close frame was sent. Ours reports
   * the code as it goes on the wire (a WHATWG socket sends 1011 as 4011), as documented.
   */
  #emitClosing(code: number, reason: string, initiator: 'local' | 'remote'): void {
    const sent = initiator === 'local' ? this.#seam.wireCloseCode(code) : code
    this.#events?.emit('closing', { code: sent, reason, initiator })
  }

  // ------------------------------------------------------------------------ socket events

  #onOpen(): void {
    this.#opened = true
    this.#queue?.release()
    this.#keepAlive?.start()
    this.#reportMissingKeepAlive()
    this.#events?.emit('open')
    this.#face.writable()
    this.#wakeRoomWaiter()
    this.#maybeFinish()
  }

  #onMessage(data: Uint8Array, isBinary: boolean): void {
    this.#keepAlive?.sawFrame()
    if (this.#fatal !== undefined || this.#released !== undefined) return
    if (!isBinary && this.#refuseText(data)) return
    if (data.length === 0) return
    if (this.#face.deliver(data)) return
    const limit = this.#options.maxReadBuffer
    // After our close frame the peer's answer must still be read (§5.5.1), so reading goes on
    // past the reader's mark, but only up to maxReadBuffer: a peer that keeps sending must not
    // grow memory without bound. Reading resumes as the reader catches up.
    if (this.#sentCloseCode !== undefined && this.#face.unreadBytes <= limit) return
    if (this.#seam.canPause) {
      this.#seam.pause()
      this.#readingHeld = false
      return
    }
    // A WHATWG socket cannot stop reading: past the limit, fail rather than grow without bound.
    if (this.#face.unreadBytes > limit) {
      this.fail(
        new WsDuplexError(
          'ERR_READ_OVERFLOW',
          `The reader fell over ${limit} bytes behind a socket that cannot pause`,
          { closeCode: this.#closeCodeOnWire(CloseCode.PolicyViolation) }
        ),
        CloseCode.PolicyViolation
      )
    }
  }

  #onPong(data: Uint8Array): void {
    this.#keepAlive?.sawFrame()
    const pings = this.#pings
    const index = pings === undefined ? -1 : pings.findIndex((p) => sameBytes(p.payload, data))
    if (pings !== undefined && index !== -1) {
      // RFC 6455 §5.5.3: a peer may answer only the latest of several pings, so this pong
      // answers the ones sent before it too (each was alive to within its own round trip).
      const now = performance.now()
      for (const ping of pings.splice(0, index + 1)) ping.resolve(now - ping.startedAt)
    }
    this.#events?.emit('pong', data)
  }

  static {
    // Shared by every connection: each call receives its Connection, so a connection costs no
    // closures for its socket listeners, its send callbacks or its timers.
    socketHandler = {
      onOpen: (connection) => connection.#onOpen(),
      onMessage: (connection, data, isBinary) => connection.#onMessage(data, isBinary),
      onPing: (connection, data) => {
        connection.#keepAlive?.sawFrame()
        connection.#events?.emit('ping', data)
      },
      onPong: (connection, data) => connection.#onPong(data),
      onError: (connection, error, rejectedStatus) => {
        connection.#socketError ??= { error, rejectedStatus }
        // After a protocol error the socket closes by itself: ws with a timer of its own at
        // closeTimeout + 1 s, a WHATWG socket with none at all. Ours bounds the wait.
        if (!connection.#opened || connection.#closeInfo !== undefined) return
        if (connection.#closeTimer === undefined) connection.#awaitEnding()
        connection.#closedBySocket(error, rejectedStatus)
      },
      onClose: (connection, code, reason) => connection.#onConnectionClosed(code, reason)
    }
    frameSink = {
      sendFrame: (connection, frame, callback) => connection.#sendFrame(frame, callback),
      frameSent: (connection, error) => connection.#frameSent(error)
    }
    closeTimerFired = (connection) => connection.#onCloseTimeout()
    lingerTimerFired = (connection) => connection.#onLingerTimeout()
    flushTimerFired = (connection) => connection.#onFlushCheck()
  }

  /** Applies the text policy; true when the frame must not be delivered. */
  /** The code the peer gets for a failure: `intended`, unless our close frame is already out. */
  #closeCodeOnWire(intended: number): number {
    return this.#seam.wireCloseCode(this.#sentCloseCode ?? intended)
  }

  #refuseText(data: Uint8Array): boolean {
    const policy = this.#options.text
    if (policy === 'bytes') return false
    const message = `A text frame (${data.length} bytes) arrived on a binary stream`
    if (policy === 'ignore') {
      this.#events?.emit('warning', new WsDuplexError('ERR_TEXT_FRAME', `${message}; ignored`))
      return true
    }
    // RFC 6455 §7.4.1: 1003 says "received a type of data it cannot accept".
    this.fail(
      new WsDuplexError('ERR_TEXT_FRAME', message, {
        closeCode: this.#closeCodeOnWire(CloseCode.UnsupportedData)
      }),
      CloseCode.UnsupportedData
    )
    return true
  }

  /**
   * A fatal error: announce it at once ('warning'), tell the peer (a close code, or terminate),
   * and end the face with it once the connection is over and the bytes that arrived before it
   * are read. Write callbacks are never failed directly: a Node stream would then destroy
   * itself and drop those unread bytes.
   */
  fail(error: WsDuplexError, action: number | 'terminate' | 'none'): void {
    if (this.#fatal !== undefined || this.#released !== undefined) return
    this.#fatal = error
    // 'close' is the last event: an error found after it (a late write) goes to the face alone.
    if (this.#closeInfo === undefined) this.#events?.emit('warning', error)
    if (typeof action === 'number') this.#startClose(action, '')
    if (action === 'terminate' || (typeof action === 'number' && this.#seam.state !== 'closing')) {
      this.#seam.terminate()
    }
    this.#maybeSurfaceFatal()
  }

  #maybeSurfaceFatal(): void {
    const fatal = this.#fatal
    if (fatal === undefined || this.#closeInfo === undefined || this.#released !== undefined) return
    this.#face.surfaceFatal(fatal)
  }

  #onConnectionClosed(code: number, reason: string): void {
    this.#stopTimers()
    const lostBytes = this.#queue?.discard() ?? 0
    const receivedCloseFrame = code !== CloseCode.Abnormal
    if (receivedCloseFrame && this.#sentCloseCode === undefined) {
      this.#emitClosing(code, reason, 'remote')
    }
    let error = this.#fatal
    if (error === undefined && this.#released === undefined) {
      error = this.#classifyEnding(code, receivedCloseFrame)
      if (error === undefined && this.#writeRefused) error = closedError(code)
      if (error === undefined && lostBytes > 0) {
        error = new WsDuplexError(
          'ERR_STREAM_CLOSED',
          `The connection closed with ${lostBytes} written bytes not sent`,
          { closeCode: code }
        )
      }
    }
    // A released stream is not classified (it reports nothing more), but its close info must
    // still say whether the ending was clean: not after destroy(err), nor a peer's 1011.
    const wasClean =
      this.#released === undefined
        ? error === undefined && receivedCloseFrame
        : !this.#releasedWithFailure &&
          receivedCloseFrame &&
          this.#classifyEnding(code, receivedCloseFrame) === undefined
    const info: CloseInfo = { code, reason, wasClean }
    this.#closeInfo = info
    this.#rejectPings(closedError(code))
    this.#failRoomWaiter(error ?? closedError(code))
    // An ending that is itself the error is reported before 'close', which is always last.
    if (error !== undefined && this.#fatal === undefined) {
      this.#fatal = error
      this.#events?.emit('warning', error)
    }
    this.#face.connectionClosed(error)
    this.#events?.emit('close', info)
    const waiters = this.#closeWaiters
    this.#closeWaiters = undefined
    for (const resolve of waiters ?? []) resolve(info)

    const released = this.#released
    if (released !== undefined) {
      this.#released = noop
      released()
      return
    }
    if (error !== undefined) {
      this.#maybeSurfaceFatal()
      return
    }
    // A clean end, and every byte accepted so far was handed to the OS before the close frame.
    const finish = this.#heldFinish
    this.#heldFinish = undefined
    this.#face.cleanEnd(finish)
  }

  /** EOF only after a clean close (RFC 6455 §7.1.4, §7.4.1); anything else is an error. */
  #classifyEnding(code: number, receivedCloseFrame: boolean): WsDuplexError | undefined {
    const socketError = this.#socketError
    if (!this.#opened || socketError !== undefined) {
      const sent = this.#sentCloseCode
      return errorFromSocket(
        socketError?.error,
        socketError?.rejectedStatus,
        this.#opened,
        sent === undefined ? undefined : this.#closeCodeOnWire(sent)
      )
    }
    if (!receivedCloseFrame && this.#closeTimedOut) return this.#closeTimeoutError()
    if (!receivedCloseFrame) {
      return new WsDuplexError(
        'ERR_ABNORMAL_CLOSURE',
        'The connection ended without a close frame (reset, or TCP closed early)',
        { closeCode: CloseCode.Abnormal }
      )
    }
    // The peer may echo our code as it went on the wire (a WHATWG socket may have to use another).
    const sent = this.#sentCloseCode
    if (
      isCleanCloseCode(code) ||
      (sent !== undefined && (code === sent || code === this.#seam.wireCloseCode(sent)))
    ) {
      return undefined
    }
    return new WsDuplexError('ERR_PEER_CLOSED_WITH_ERROR', `The peer closed with code ${code}`, {
      closeCode: code
    })
  }

  #stopTimers(): void {
    clearTimeout(this.#closeTimer)
    this.#closeTimer = undefined
    this.#keepAlive?.stop()
  }

  #rejectPings(error: Error): void {
    const pings = this.#pings
    this.#pings = undefined
    for (const ping of pings ?? []) ping.reject(error)
  }
}

/** The error for using a stream whose connection is closing or closed. */
export function closedError(closeCode?: number): WsDuplexError {
  return new WsDuplexError(
    'ERR_STREAM_CLOSED',
    'The WebSocket is closing or closed',
    closeCode === undefined ? {} : { closeCode }
  )
}

/**
 * Whether a destroy() reason is a real failure (the peer gets 1011) or the consumer just
 * stopping: Node's async iterator destroys with an AbortError on `break`, which deserves 1000.
 */
export function isFailure(error: Error | null | undefined): boolean {
  return error != null && error.name !== 'AbortError'
}

/** The errors a socket answers with a close frame of its own (ws: 1002, 1007, 1009). */
const SOCKET_CLOSES_FOR: ReadonlySet<string> = new Set(['ERR_PROTOCOL', 'ERR_PAYLOAD_TOO_LARGE'])

/** Numbers the default ping payloads; unique in the process, so unique per connection too. */
let pingSequence = 0

function ignoreSendResult(): void {}

function noop(): void {}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** An 8-byte ping payload unique to this connection, so pongs match pings. */
function pingPayload(sequence: number): Uint8Array {
  const payload = new Uint8Array(8)
  new DataView(payload.buffer).setFloat64(0, sequence)
  return payload
}
