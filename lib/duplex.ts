/**
 * WsDuplex: one WebSocket, two faces. It is a Node `stream.Duplex` (byte mode) and an
 * it-stream-types duplex (`source` / `sink`); both faces drive the same engine below, with one
 * read buffer, one send queue and one backpressure.
 */
import { Duplex } from 'node:stream'
import { finished } from 'node:stream/promises'
import { performance } from 'node:perf_hooks'
import type { Duplex as ItDuplex, Source } from 'it-stream-types'
import { WebSocket } from 'ws'
import { CloseCode, assertCloseArguments, isCleanCloseCode } from './close-codes.js'
import { WsDuplexError } from './errors.js'
import { DuplexEvents, type CloseInfo } from './events.js'
import { drainSource, SourceQueue, type ChunkWriter, type SinkChunk } from './iterable.js'
import { KeepAlive } from './keepalive.js'
import { normalizeOptions, type NormalizedOptions, type WsDuplexOptions } from './options.js'
import { SendQueue, type FrameSink } from './send-queue.js'
import { NodeWsSocket, type SocketHandler, type SocketSeam } from './socket.js'
import { errorFromSocket } from './socket-errors.js'

export type CloseResult = CloseInfo

type WriteCallback = (error?: Error | null) => void

interface PendingPing {
  readonly payload: Buffer
  readonly startedAt: number
  readonly resolve: (rttMs: number) => void
  readonly reject: (error: Error) => void
}

/** RFC 6455 §5.5: control frames, pings included, carry at most 125 bytes. */
const MAX_PING_BYTES = 125

/** Internal: told when the connection is over (createServer() keeps its live set with it). */
export const kOnConnectionClosed = Symbol('ws-duplex.onConnectionClosed')

// Set by the static block in WsDuplex, which alone may touch its private members.
let socketHandler: SocketHandler<WsDuplex>
let frameSink: FrameSink<WsDuplex>
let closeTimerFired: (duplex: WsDuplex) => void
let flushTimerFired: (duplex: WsDuplex) => void

export class WsDuplex
  extends Duplex
  implements ItDuplex<AsyncIterable<Uint8Array>, Source<SinkChunk>, Promise<void>>
{
  readonly #socket: WebSocket
  readonly #seam: SocketSeam<WsDuplex>
  readonly #options: NormalizedOptions
  readonly #queue: SendQueue<WsDuplex>
  /** Made on first use: most connections never look at their events. */
  #events: DuplexEvents | undefined
  readonly #keepAlive: KeepAlive | undefined

  /** The `_write` callback held back while the send queue is over the high water mark. */
  #heldWrite: WriteCallback | undefined
  /** The `_final` callback, waiting for every byte to be handed to the OS. */
  #heldFinal: WriteCallback | undefined
  /** The `_destroy` callback, waiting for the socket to report it is closed. */
  #heldDestroy: (() => void) | undefined

  #opened: boolean
  /** What `end()` sends; `close(code, reason)` changes it before the frame is sent. */
  #closeCodeToSend: number = CloseCode.Normal
  #closeReasonToSend = ''
  /** The code of the close frame we sent, once we sent one. */
  #sentCloseCode: number | undefined
  #closingEmitted = false
  #closeTimer: NodeJS.Timeout | undefined
  /** Set whenever a frame is flushed; close() treats a flush without it for a while as stalled. */
  #flushedSinceCheck = false
  /** A fatal error waiting for the reader to take the bytes that arrived before it. */
  #fatal: WsDuplexError | undefined
  /** The first error the socket reported; `onClose` turns it into a coded error. */
  #socketError: { error: Error; rejectedStatus: number | undefined } | undefined
  /** Set once the connection is over. */
  #closeInfo: CloseInfo | undefined
  #closeWaiters: ((info: CloseInfo) => void)[] | undefined
  #pings: PendingPing[] | undefined
  #pingSequence = 0
  #readFace: 'stream' | 'source' | undefined
  #writeFace: 'stream' | 'sink' | undefined
  #sinkWaiter: { resolve: () => void; reject: (error: Error) => void } | undefined
  #source: SourceQueue | undefined
  /** The readable side was ended after a clean close. */
  #readEnded = false
  #sink: ((source: Source<SinkChunk>) => Promise<void>) | undefined;
  /** @internal */
  [kOnConnectionClosed]: ((duplex: WsDuplex) => void) | undefined

  /**
   * @param socket a `ws` WebSocket, client or server side, CONNECTING or OPEN. WsDuplex takes
   *   it over: do not send on it or listen for its messages yourself.
   */
  constructor(socket: WebSocket, options?: WsDuplexOptions) {
    if (!(socket instanceof WebSocket)) {
      throw new TypeError(`Expected \`socket\` to be a ws WebSocket, got ${typeof socket}`)
    }
    if (socket.readyState !== WebSocket.CONNECTING && socket.readyState !== WebSocket.OPEN) {
      throw new WsDuplexError('ERR_STREAM_CLOSED', 'Expected `socket` to be CONNECTING or OPEN')
    }
    const normalized = normalizeOptions(options)
    super({
      allowHalfOpen: true,
      decodeStrings: true,
      readableHighWaterMark: normalized.readableHighWaterMark,
      writableHighWaterMark: normalized.writableHighWaterMark
    })
    this.#socket = socket
    this.#options = normalized
    this.#seam = new NodeWsSocket(socket)
    this.#queue = new SendQueue(normalized.maxFrameSize, this as WsDuplex, frameSink)
    this.#opened = socket.readyState === WebSocket.OPEN
    if (!this.#opened) this.#queue.hold()
    this.#keepAlive =
      normalized.keepAlive === undefined
        ? undefined
        : new KeepAlive(normalized.keepAlive, {
            isPaused: () => this.#seam.isPaused,
            sendPing: () => this.#seam.ping(Buffer.alloc(0), ignoreSendResult),
            onTimeout: () => this.#onKeepAliveTimeout()
          })
    this.#seam.attach(this, socketHandler)
    if (this.#opened) this.#keepAlive?.start()
  }

  /** Out-of-band events: warnings, pings, pongs, the close handshake. Never throws unobserved. */
  get events(): DuplexEvents {
    return (this.#events ??= new DuplexEvents())
  }

  /** The wrapped `ws` WebSocket, for reading `protocol`, `extensions` or `url`. */
  get socket(): WebSocket {
    return this.#socket
  }

  /** Set once the connection is over: its close code, reason, and whether it ended cleanly. */
  get closeInfo(): CloseInfo | undefined {
    return this.#closeInfo
  }

  // ---------------------------------------------------------------- the source / sink face

  /**
   * The bytes received, as an async iterable (it-stream-types `Source`). Breaking out of it
   * destroys the stream like breaking out of `for await (const chunk of d)`: the peer gets a
   * 1000 close frame. Using it together with the Duplex read face is an `ERR_FACE_CONFLICT`.
   */
  get source(): AsyncIterable<Uint8Array> {
    if (this.#source !== undefined) return this.#source
    if (this.#readFace === 'stream' || this.readableFlowing !== null) {
      throw new WsDuplexError(
        'ERR_FACE_CONFLICT',
        '`source` cannot be used once the Duplex read face (pipe, data, read) is in use'
      )
    }
    this.#readFace = 'source'
    // The source owns the read face, so frames go to its own bounded queue rather than
    // through the Readable buffer (which copies when it hands out several at once).
    const source = new SourceQueue(
      {
        resumeReading: () => {
          if (this.#seam.isPaused) this.#seam.resume()
        },
        abandon: (error) => {
          this.destroy(error)
        }
      },
      this.readableHighWaterMark
    )
    this.#source = source
    // Errors reach source users through the iterator (and sink()); an 'error' event nobody
    // listens to must not also crash the process.
    this.on('error', ignoreError)
    for (let chunk: Buffer | null; (chunk = super.read() as Buffer | null) !== null;)
      source.push(chunk)
    if (this.#readEnded) source.end()
    else if (this.#fatal !== undefined && this.#closeInfo !== undefined) this.#maybeSurfaceFatal()
    return source
  }

  /**
   * Sends every chunk of `source` (Uint8Array or Uint8ArrayList), awaiting backpressure, then
   * ends the stream (close frame 1000). Resolves when every byte is flushed; rejects with the
   * stream's error. Works detached from the object, as it-pipe calls it.
   */
  get sink(): (source: Source<SinkChunk>) => Promise<void> {
    return (this.#sink ??= (source) => this.#runSink(source))
  }

  async #runSink(source: Source<SinkChunk>): Promise<void> {
    if (this.#writeFace !== undefined || this.writableEnded) {
      throw new WsDuplexError(
        'ERR_FACE_CONFLICT',
        this.#writeFace === 'sink'
          ? '`sink()` can be called only once'
          : '`sink()` cannot be used once the Duplex write face (write, end, pipe) is in use'
      )
    }
    this.#writeFace = 'sink'
    await drainSource(this.#sinkWriter(), source)
  }

  /**
   * The sink owns the write face (mixing is refused), so it feeds the send queue directly
   * instead of through Writable.write(): a length-prefixed message is two chunks, and the
   * Writable machinery per chunk cost more than the framing. Backpressure is the same high
   * water mark over the same queued and in-flight bytes.
   */
  #sinkWriter(): ChunkWriter {
    return {
      write: (chunk) => {
        if (this.destroyed || this.writableEnded) throw this.#fatal ?? closedError()
        const state = this.#seam.state
        if (state !== 'open' && state !== 'connecting') {
          throw this.#fatal ?? closedError(this.#closeInfo?.code ?? this.#sentCloseCode)
        }
        this.#queue.push(asBuffer(chunk))
        return this.#opened && this.#queue.pendingBytes < this.writableHighWaterMark
      },
      drained: () =>
        new Promise<void>((resolve, reject) => {
          this.#sinkWaiter = { resolve, reject }
          this.#wakeSink()
        }),
      finish: async () => {
        if (!this.writableEnded) this.end()
        await finished(this, { readable: false })
      },
      abort: (error) => {
        this.destroy(error)
      }
    }
  }

  /** Lets a waiting sink go on once the queue is under the mark, or fails it. */
  #wakeSink(failure?: Error): void {
    const waiter = this.#sinkWaiter
    if (waiter === undefined) return
    if (failure !== undefined) {
      this.#sinkWaiter = undefined
      waiter.reject(failure)
    } else if (this.#opened && this.#queue.pendingBytes < this.writableHighWaterMark) {
      this.#sinkWaiter = undefined
      waiter.resolve()
    }
  }

  // -------------------------------------------------------------- the Duplex face: writing

  override write(chunk: unknown, callback?: WriteCallback): boolean
  override write(chunk: unknown, encoding: BufferEncoding, callback?: WriteCallback): boolean
  override write(
    chunk: unknown,
    encoding?: BufferEncoding | WriteCallback,
    callback?: WriteCallback
  ): boolean {
    if (this.#writeFace === 'sink') {
      throw new WsDuplexError(
        'ERR_FACE_CONFLICT',
        '`write()` cannot be used while `sink()` is in use'
      )
    }
    this.#writeFace ??= 'stream'
    return typeof encoding === 'function'
      ? super.write(chunk, encoding)
      : super.write(chunk, encoding as BufferEncoding, callback)
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    if (this.#refuseWrite(callback)) return
    this.#queue.push(chunk)
    this.#admit(callback)
  }

  override _writev(chunks: { chunk: Buffer }[], callback: WriteCallback): void {
    if (this.#refuseWrite(callback)) return
    for (const { chunk } of chunks) this.#queue.push(chunk)
    this.#admit(callback)
  }

  /** A write once the connection is closing cannot be delivered: that is a stream error. */
  #refuseWrite(callback: WriteCallback): boolean {
    const state = this.#seam.state
    if (state === 'open' || state === 'connecting') return false
    this.#heldWrite = callback
    this.#fail(closedError(this.#closeInfo?.code ?? this.#sentCloseCode), 'none')
    return true
  }

  /**
   * Accepts the next write at once while the queued and in-flight bytes are under the high
   * water mark; otherwise holds it until frames are flushed. While connecting every write is
   * held, so a failed handshake fails them all.
   */
  #admit(callback: WriteCallback): void {
    if (this.#opened && this.#queue.pendingBytes < this.writableHighWaterMark) callback()
    else this.#heldWrite = callback
  }

  #frameSent(error: Error | null | undefined): void {
    if (error) {
      if (this.#closeInfo === undefined) {
        const code = this.#seam.state === 'open' ? 'ERR_SEND_FAILED' : 'ERR_STREAM_CLOSED'
        this.#fail(
          new WsDuplexError(code, 'A frame could not be sent', { cause: error }),
          'terminate'
        )
      }
      return
    }
    this.#flushedSinceCheck = true
    this.#releaseHeldWrite()
    this.#wakeSink()
    this.#maybeFinish()
  }

  #releaseHeldWrite(): void {
    const callback = this.#heldWrite
    if (callback === undefined || this.#fatal !== undefined) return
    if (!this.#opened || this.#queue.pendingBytes >= this.writableHighWaterMark) return
    this.#heldWrite = undefined
    callback()
  }

  override _final(callback: WriteCallback): void {
    this.#heldFinal = callback
    this.#queue.flush()
    this.#maybeFinish()
  }

  /** After `end()`: once every byte is handed to the OS, send our close frame (§5.5.1). */
  #maybeFinish(): void {
    const callback = this.#heldFinal
    if (callback === undefined || this.#fatal !== undefined) return
    if (!this.#opened || this.#queue.pendingBytes > 0) return
    this.#heldFinal = undefined
    this.#startClose(this.#closeCodeToSend, this.#closeReasonToSend)
    callback()
  }

  /** Sends our close frame once, if the socket is still open, and starts the close timer. */
  #startClose(code: number, reason: string): void {
    if (this.#sentCloseCode !== undefined || this.#seam.state !== 'open') return
    this.#sentCloseCode = code
    // A paused socket reads nothing, so it would never see the peer's answering close frame
    // (the createWebSocketStream `_final` trap); from here on reading is never paused again.
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
    const ms = this.#options.closeTimeout
    this.#fail(
      new WsDuplexError(
        'ERR_CLOSE_TIMEOUT',
        `The peer did not complete the close within ${ms} ms`,
        {
          closeCode: CloseCode.Abnormal
        }
      ),
      'terminate'
    )
  }

  #onKeepAliveTimeout(): void {
    const ms = this.#options.keepAlive?.timeout ?? 0
    this.#fail(
      new WsDuplexError('ERR_KEEPALIVE_TIMEOUT', `No frame arrived within ${ms} ms of a ping`, {
        closeCode: CloseCode.Abnormal
      }),
      'terminate'
    )
  }

  #emitClosing(code: number, reason: string, initiator: 'local' | 'remote'): void {
    if (this.#closingEmitted) return
    this.#closingEmitted = true
    this.#events?.emit('closing', { code, reason, initiator })
  }

  // -------------------------------------------------------------- the Duplex face: reading

  override _read(): void {
    if (this.#seam.isPaused) this.#seam.resume()
  }

  /** Every consumer (data events, pipe, async iteration) reads through here. */
  override read(size?: number): ReturnType<Duplex['read']> {
    // The base signature, unchanged: @types/node types it loosely and NodeJS.ReadableStream
    // (which pipe destinations expect) depends on that.
    const chunk: Buffer | null = super.read(size)
    // A fatal error waits until the bytes that arrived before it have been read.
    if (this.#fatal !== undefined && this.#closeInfo !== undefined && this.readableLength === 0) {
      process.nextTick(() => this.#maybeSurfaceFatal())
    }
    return chunk
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    if (this.#readFace === 'source') {
      throw new WsDuplexError(
        'ERR_FACE_CONFLICT',
        '`pipe()` cannot be used once `source` is in use'
      )
    }
    this.#readFace = 'stream'
    return super.pipe(destination, options)
  }

  // ------------------------------------------------------------------ close, ping, destroy

  /**
   * Graceful close: flushes every written byte, sends a close frame with `code`, and resolves
   * once the connection is over (at once when it already is). Code and reason are checked
   * first (RFC 6455 §7.4: 1000-1003, 1007-1014, 3000-4999; reason at most 123 bytes).
   * Flushing and the handshake are each bounded by `closeTimeout`.
   */
  close(code: number = CloseCode.Normal, reason = ''): Promise<CloseResult> {
    assertCloseArguments(code, reason)
    if (this.#closeInfo !== undefined) return Promise.resolve(this.#closeInfo)
    const result = new Promise<CloseResult>((resolve) => (this.#closeWaiters ??= []).push(resolve))
    if (this.#sentCloseCode === undefined) {
      this.#closeCodeToSend = code
      this.#closeReasonToSend = reason
    }
    if (!this.writableEnded) this.end()
    if (this.#sentCloseCode === undefined && this.#closeTimer === undefined) {
      // Bound the flush too: a peer that stops reading must not hold close() forever. A slow
      // peer that still reads is fine: only a whole closeTimeout without progress counts.
      this.#flushedSinceCheck = false
      this.#closeTimer = setTimeout(flushTimerFired, this.#options.closeTimeout, this)
    }
    return result
  }

  /**
   * Sends a ping and resolves with the round-trip time in milliseconds when its pong arrives.
   * Rejects with `ERR_STREAM_CLOSED` if the connection closes first.
   */
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
    if (this.#seam.state !== 'open' || this.destroyed) return Promise.reject(closedError())
    const payload = data === undefined ? pingPayload(++this.#pingSequence) : Buffer.from(data)
    return new Promise((resolve, reject) => {
      const ping: PendingPing = { payload, startedAt: performance.now(), resolve, reject }
      ;(this.#pings ??= []).push(ping)
      this.#seam.ping(payload, (error) => {
        if (!error) return
        this.#pings = this.#pings?.filter((pending) => pending !== ping)
        reject(closedError())
      })
    })
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopTimers()
    const failure = error ?? closedError(this.#closeInfo?.code)
    this.#failHeldCallbacks(failure)
    this.#wakeSink(failure)
    this.#source?.fail(failure)
    this.#rejectPings(failure)
    if (this.#closeInfo !== undefined) {
      callback(error)
      return
    }
    // Release the socket now: a best-effort close frame, so the peer learns a real code rather
    // than 1006, then terminate without waiting for an answer.
    if (this.#seam.state === 'open' && this.#sentCloseCode === undefined) {
      const code = isFailure(error) ? CloseCode.InternalError : CloseCode.Normal
      this.#sentCloseCode = code
      this.#seam.close(code, '')
      this.#emitClosing(code, '', 'local')
    }
    this.#heldDestroy = () => callback(error)
    this.#seam.terminate()
  }

  // --------------------------------------------------------------------- socket events

  #onOpen(): void {
    this.#opened = true
    this.#queue.release()
    this.#keepAlive?.start()
    this.#events?.emit('open')
    this.#releaseHeldWrite()
    this.#wakeSink()
    this.#maybeFinish()
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    this.#keepAlive?.sawFrame()
    if (this.#fatal !== undefined || this.destroyed) return
    if (!isBinary && this.#refuseText(data)) return
    if (data.length === 0) return
    const accepted = this.#source !== undefined ? this.#source.push(data) : this.push(data)
    if (!accepted && this.#sentCloseCode === undefined) this.#seam.pause()
  }

  #onPong(data: Buffer): void {
    this.#keepAlive?.sawFrame()
    const pings = this.#pings
    const index = pings === undefined ? -1 : pings.findIndex((ping) => ping.payload.equals(data))
    if (pings !== undefined && index !== -1) {
      const [ping] = pings.splice(index, 1) as [PendingPing]
      ping.resolve(performance.now() - ping.startedAt)
    }
    this.#events?.emit('pong', data)
  }

  static {
    // Shared by every connection: each call receives its WsDuplex, so a connection costs no
    // closures for its socket listeners, its send callbacks or its timers.
    socketHandler = {
      onOpen: (duplex) => duplex.#onOpen(),
      onMessage: (duplex, data, isBinary) => duplex.#onMessage(data, isBinary),
      onPing: (duplex, data) => {
        duplex.#keepAlive?.sawFrame()
        duplex.#events?.emit('ping', data)
      },
      onPong: (duplex, data) => duplex.#onPong(data),
      onError: (duplex, error, rejectedStatus) => {
        duplex.#socketError ??= { error, rejectedStatus }
      },
      onClose: (duplex, code, reason) => duplex.#onConnectionClosed(code, reason)
    }
    frameSink = {
      sendFrame: (duplex, frame, callback) => duplex.#seam.send(frame, callback),
      frameSent: (duplex, error) => duplex.#frameSent(error)
    }
    closeTimerFired = (duplex) => duplex.#onCloseTimeout()
    flushTimerFired = (duplex) => duplex.#onFlushCheck()
  }

  /** Applies the text policy; true when the frame must not be delivered. */
  #refuseText(data: Buffer): boolean {
    const policy = this.#options.text
    if (policy === 'bytes') return false
    const message = `A text frame (${data.length} bytes) arrived on a binary stream`
    if (policy === 'ignore') {
      this.#events?.emit('warning', new WsDuplexError('ERR_TEXT_FRAME', `${message}; ignored`))
      return true
    }
    // RFC 6455 §7.4.1: 1003 says "received a type of data it cannot accept".
    this.#fail(
      new WsDuplexError('ERR_TEXT_FRAME', message, { closeCode: CloseCode.UnsupportedData }),
      CloseCode.UnsupportedData
    )
    return true
  }

  /**
   * A fatal error: announce it at once ('warning'), tell the peer (a close code, or terminate),
   * and end the stream with it once the connection is over and the bytes that arrived before
   * it are read. Write callbacks are never failed directly: Node would destroy the stream and
   * drop those unread bytes.
   */
  #fail(error: WsDuplexError, action: number | 'terminate' | 'none'): void {
    if (this.#fatal !== undefined || this.destroyed) return
    this.#fatal = error
    this.#events?.emit('warning', error)
    if (typeof action === 'number') this.#startClose(action, '')
    if (action === 'terminate' || (typeof action === 'number' && this.#seam.state !== 'closing')) {
      this.#seam.terminate()
    }
    this.#maybeSurfaceFatal()
  }

  /**
   * The error waits for the reader to drain the bytes that arrived before it, unless a writer
   * is blocked on us: then nobody may ever read (a pipe into ourselves, say) and the writer
   * must learn now.
   */
  #maybeSurfaceFatal(): void {
    if (this.#fatal === undefined || this.#closeInfo === undefined || this.destroyed) return
    if (this.#source !== undefined) {
      // The source throws it once its queued frames are read.
      this.#source.fail(this.#fatal)
      this.destroy(this.#fatal)
      return
    }
    const writerBlocked = this.#heldWrite !== undefined || this.#heldFinal !== undefined
    if (this.readableLength === 0 || writerBlocked) this.destroy(this.#fatal)
  }

  #onConnectionClosed(code: number, reason: string): void {
    this.#stopTimers()
    const lostBytes = this.#queue.discard()
    const receivedCloseFrame = code !== CloseCode.Abnormal
    if (receivedCloseFrame && this.#sentCloseCode === undefined) {
      this.#emitClosing(code, reason, 'remote')
    }
    let error = this.#fatal
    if (error === undefined && this.#heldDestroy === undefined) {
      error = this.#classifyEnding(code, receivedCloseFrame)
      if (error === undefined && lostBytes > 0) {
        error = new WsDuplexError(
          'ERR_STREAM_CLOSED',
          `The connection closed with ${lostBytes} written bytes not sent`,
          { closeCode: code }
        )
      }
    }
    const info: CloseInfo = { code, reason, wasClean: error === undefined && receivedCloseFrame }
    this.#closeInfo = info
    this.#rejectPings(closedError(code))
    this.#wakeSink(error ?? closedError(code))
    this[kOnConnectionClosed]?.(this)
    this.#events?.emit('close', info)
    const waiters = this.#closeWaiters
    this.#closeWaiters = undefined
    for (const resolve of waiters ?? []) resolve(info)

    const destroyed = this.#heldDestroy
    if (destroyed !== undefined) {
      this.#heldDestroy = undefined
      destroyed()
      return
    }
    if (error !== undefined) {
      if (this.#fatal === undefined) {
        this.#fatal = error
        this.#events?.emit('warning', error)
      }
      this.#maybeSurfaceFatal()
      return
    }
    // A clean end, and every byte accepted so far was handed to the OS before the close frame.
    // Releasing the held callbacks lets Node pass on what it still buffers; those writes are
    // refused (ERR_STREAM_CLOSED), so no accepted byte is dropped silently.
    const write = this.#heldWrite
    const final = this.#heldFinal
    this.#heldWrite = undefined
    this.#heldFinal = undefined
    write?.()
    final?.()
    this.#readEnded = true
    this.push(null)
    if (!this.writableFinished) this.once('end', destroyAfterEnd)
    if (this.#source !== undefined) {
      this.#source.end()
      // Nobody reads the Readable in source mode: let it emit 'end' so the stream can close.
      super.read(0)
    }
  }

  /** EOF only after a clean close (RFC 6455 §7.1.4, §7.4.1); anything else is an error. */
  #classifyEnding(code: number, receivedCloseFrame: boolean): WsDuplexError | undefined {
    const socketError = this.#socketError
    if (!this.#opened || socketError !== undefined) {
      return errorFromSocket(socketError?.error, socketError?.rejectedStatus, this.#opened)
    }
    if (!receivedCloseFrame) {
      return new WsDuplexError(
        'ERR_ABNORMAL_CLOSURE',
        'The connection ended without a close frame (reset, or TCP closed early)',
        { closeCode: CloseCode.Abnormal }
      )
    }
    if (isCleanCloseCode(code) || code === this.#sentCloseCode) return undefined
    return new WsDuplexError('ERR_PEER_CLOSED_WITH_ERROR', `The peer closed with code ${code}`, {
      closeCode: code
    })
  }

  #stopTimers(): void {
    clearTimeout(this.#closeTimer)
    this.#closeTimer = undefined
    this.#keepAlive?.stop()
  }

  #failHeldCallbacks(error: Error): void {
    const write = this.#heldWrite
    const final = this.#heldFinal
    this.#heldWrite = undefined
    this.#heldFinal = undefined
    write?.(error)
    final?.(error)
  }

  #rejectPings(error: Error): void {
    const pings = this.#pings
    this.#pings = undefined
    for (const ping of pings ?? []) ping.reject(error)
  }
}

function closedError(closeCode?: number): WsDuplexError {
  return new WsDuplexError(
    'ERR_STREAM_CLOSED',
    'The WebSocket is closing or closed',
    closeCode === undefined ? {} : { closeCode }
  )
}

/** After a clean close the write side has nowhere to go: release the stream once read. */
function destroyAfterEnd(this: WsDuplex): void {
  if (!this.destroyed) this.destroy()
}

function ignoreSendResult(): void {}

function ignoreError(): void {}

/** A Buffer view of the same bytes (no copy), as ws and the send queue take Buffers. */
function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk)
    ? chunk
    : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
}

/**
 * Whether a destroy() reason is a real failure (the peer gets 1011) or the consumer just
 * stopping: Node's async iterator destroys with an AbortError on `break`, which deserves 1000.
 */
function isFailure(error: Error | null): boolean {
  return error !== null && error.name !== 'AbortError'
}

/** An 8-byte ping payload unique to this stream, so pongs match pings. */
function pingPayload(sequence: number): Buffer {
  const payload = Buffer.allocUnsafe(8)
  payload.writeDoubleBE(sequence)
  return payload
}
