/**
 * WsDuplex: one WebSocket, two faces. It is a Node `stream.Duplex` (byte mode) and an
 * it-stream-types duplex (`source` / `sink`); both faces drive the same engine below, with one
 * read buffer, one send queue and one backpressure.
 */
import { Duplex, type Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import type { Duplex as ItDuplex, Source } from 'it-stream-types'
import { WebSocket } from 'ws'
import { CloseCode } from './close-codes.js'
import { Connection, closedError, isFailure, type ConnectionFace } from './connection.js'
import { DuplexEvents } from './duplex-events.js'
import { WsDuplexError } from './errors.js'
import type { CloseInfo } from './events.js'
import {
  closedWhileSinking,
  SinkRun,
  SourceQueue,
  type ChunkWriter,
  type SinkChunk
} from './iterable.js'
import { normalizeOptions, type WsDuplexOptions } from './options.js'
import { NodeWsSocket } from './socket.js'

export type CloseResult = CloseInfo

type WriteCallback = (error?: Error | null) => void

/** Internal: told when the connection is over (createServer() keeps its live set with it). */
export const kOnConnectionClosed = Symbol('ws-duplex.onConnectionClosed')
/** Internal: connect() and createServer() hold reading while they hand an open duplex over. */
export const kHoldReading = Symbol('ws-duplex.holdReading')

/**
 * Written chunks smaller than this are copied into the send queue, larger ones sent from the
 * writer's memory. The copy keeps small writes answered at once (their bursts merged into one
 * frame, destroy() sending them all); 64-byte writes ran at 15.6× `ws` copied against 17.2×
 * sent as views that waited for the kernel, within the bench's noise.
 */
const COPY_BELOW = 16 * 1024

// Set by the static block in WsDuplex, which alone may touch its private members.
let faceOf: (duplex: WsDuplex) => ConnectionFace

export class WsDuplex
  extends Duplex
  implements ItDuplex<AsyncIterable<Uint8Array>, Source<SinkChunk>, Promise<void>>
{
  readonly #socket: WebSocket
  readonly #connection: Connection

  /**
   * The `_write` callback, held while the send queue is over the high water mark and, for a
   * write sent as views of the writer's memory, until those bytes are flushed (Node's
   * contract: after the callback the writer may reuse its buffer).
   */
  #heldWrite: WriteCallback | undefined
  /** The stream position the held write's views end at (Connection#push); none if copied. */
  #heldWriteEnd: number | undefined
  /** Pipes from this stream into other streams, still attached. */
  #pipesElsewhere = 0
  /** The held callback is a refused write's (final): only the connection's ending answers it. */
  #heldWriteRefused = false
  /** Bytes of the write whose callback is held (Node counts them in `writableLength`). */
  #heldWriteBytes = 0
  #readFace: 'stream' | 'source' | undefined
  #writeFace: 'stream' | 'sink' | undefined
  #source: SourceQueue | undefined
  /** The readable side was ended after a clean close. */
  #readEnded = false
  #sink: ((source: Source<SinkChunk>) => Promise<void>) | undefined
  #sinkRun: SinkRun | undefined;
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
    this.#connection = new Connection(new NodeWsSocket(socket), faceOf(this), normalized)
    this.on('pipe', WsDuplex.#onPipedInto)
  }

  /**
   * `source.pipe(duplex)` writes through write(), but only once data flows: the conflict with
   * a sink is found here, as the pipe is made, so it throws from pipe() itself.
   */
  static #onPipedInto(this: WsDuplex, source: Readable): void {
    if (this.#writeFace === 'sink') {
      source.unpipe(this)
      throw new WsDuplexError(
        'ERR_FACE_CONFLICT',
        '`pipe()` into the stream cannot be used while `sink()` is in use'
      )
    }
    this.#writeFace ??= 'stream'
  }

  /** Out-of-band events: warnings, pings, pongs, the close handshake. Never throws unobserved. */
  get events(): DuplexEvents {
    return this.#connection.events as DuplexEvents
  }

  /** @internal Reads nothing until the next turn, while connect() or a server loop hands this over. */
  [kHoldReading](): void {
    this.#connection.holdReadingForOneTurn()
  }

  /** The wrapped `ws` WebSocket, for reading `protocol`, `extensions` or `url`. */
  get socket(): WebSocket {
    return this.#socket
  }

  /** Set once the connection is over: its close code, reason, and whether it ended cleanly. */
  get closeInfo(): CloseInfo | undefined {
    return this.#connection.closeInfo
  }

  // ---------------------------------------------------------------- the source / sink face

  /**
   * The bytes received, as an async iterable (it-stream-types `Source`). Breaking out of it
   * destroys the stream like breaking out of `for await (const chunk of d)`: the peer gets
   * 1000, or 1011 while writes are unfinished (see destroy()). Using it together with the
   * Duplex read face is an `ERR_FACE_CONFLICT`.
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
    const connection = this.#connection
    const source = new SourceQueue(
      {
        resumeReading: () => connection.resumeReading(),
        abandon: (error) => {
          // A `break` while a sink runs: its source may be about to end (the reply it waited
          // for has just come), and the peer's close code depends on it; give it a turn.
          if (error === undefined && this.#sinkRun?.draining === true) {
            setTimeout(destroyDuplex, 0, this)
            return
          }
          // Once the connection failed, letting go (a sink stopping its source, say) must keep
          // its error, not turn it into a plain stop.
          this.destroy(error ?? (connection.closeInfo === undefined ? undefined : connection.fatal))
        }
      },
      this.readableHighWaterMark
    )
    this.#source = source
    // Errors reach source users through the iterator (and sink()); an 'error' event nobody
    // listens to must not also crash the process.
    this.on('error', ignoreError)
    // A 'data' or 'readable' listener (and so Node's iterator()) would wait for bytes that now
    // go to the source: refuse it as it is added.
    this.on('newListener', refuseReadListener)
    for (let chunk: Buffer | null; (chunk = super.read() as Buffer | null) !== null;)
      source.push(chunk)
    if (this.#readEnded) source.end()
    else if (this.destroyed) {
      // Too late for _destroy to reach it: the queue must not wait for frames that never come.
      source.fail(this.errored ?? connection.fatal ?? closedError(connection.closeInfo?.code))
    } else connection.readerProgressed()
    return source
  }

  /**
   * `for await (const chunk of d)` reads through `source`: each frame is handed on as it came.
   * Node's own Readable iterator would copy everything buffered into one chunk per step, which
   * a framing decoder (it-length-prefixed) then takes apart again. Once the Duplex read face is
   * in use (data, pipe, read), or an encoding is set (setEncoding(): strings, decoded across
   * frames), Node's iterator serves as usual; `d.iterator()` always is Node's.
   */
  override [Symbol.asyncIterator](): ChunkIterator<Buffer> {
    const iterator = (
      this.#readFace === 'stream' || this.readableFlowing !== null || this.readableEncoding !== null
        ? super[Symbol.asyncIterator]()
        : // Buffers, as from Node's iterator: the ws seam receives with binaryType 'nodebuffer'.
          (this.source as SourceQueue)[Symbol.asyncIterator]()
    ) as ChunkIterator<Buffer>
    // Newer Node types (and Nodes) make stream iterators disposable: so is ours, on any Node.
    iterator[Symbol.asyncDispose] ??= disposeIterator
    return iterator
  }

  /**
   * Sends every chunk of `source` (Uint8Array or Uint8ArrayList), awaiting backpressure, then
   * ends the stream (close frame 1000). Resolves when every byte is flushed; rejects with the
   * stream's error, at once if the connection ends while the source still runs (whose
   * `return()` is then called). Works detached from the object, as it-pipe calls it.
   */
  get sink(): (source: Source<SinkChunk>) => Promise<void> {
    return (this.#sink ??= (source) => this.#runSink(source))
  }

  async #runSink(source: Source<SinkChunk>): Promise<void> {
    if (this.#writeFace !== undefined) {
      throw new WsDuplexError(
        'ERR_FACE_CONFLICT',
        this.#writeFace === 'sink'
          ? '`sink()` can be called only once'
          : '`sink()` cannot be used once the Duplex write face (write, pipe) is in use'
      )
    }
    // As for `source`: the error reaches sink users as the rejection, so an 'error' event
    // nobody listens to must not also crash the process. A reader on the Duplex face (pipe,
    // 'data') hears of errors through 'error', as from any Node stream.
    if (this.#readFace === undefined && this.readableFlowing === null) this.on('error', ignoreError)
    const connection = this.#connection
    // While merely closing, the first chunk is refused and reports how the connection ends.
    if (this.destroyed || this.writableEnded || connection.closeInfo !== undefined) {
      throw connection.fatal ?? this.errored ?? closedError(connection.lastCloseCode)
    }
    this.#writeFace = 'sink'
    this.#sinkRun = new SinkRun(this.#sinkWriter())
    await this.#sinkRun.run(source)
  }

  /**
   * The sink owns the write face (mixing is refused), so it feeds the send queue directly
   * instead of through Writable.write(): a length-prefixed message is two chunks, and the
   * Writable machinery per chunk cost more than the framing. Backpressure is the same high
   * water mark over the same queued and in-flight bytes.
   */
  #sinkWriter(): ChunkWriter {
    const connection = this.#connection
    return {
      write: (chunk) => {
        if (this.destroyed) throw connection.fatal ?? closedError(connection.lastCloseCode)
        if (this.writableEnded) throw connection.fatal ?? closedWhileSinking()
        if (!connection.acceptsWrites) return connection.refuseSinkChunk()
        connection.push(chunk)
        return connection.hasRoom
      },
      drained: () => connection.whenRoom(),
      finish: async () => {
        this.#endWriteSide()
        await finished(this, { readable: false })
        // Ended, then let go (destroy(), a break) before the peer's clean answer: the bytes
        // may not all have been taken, so the sink cannot report a complete transfer.
        const info = connection.closeInfo
        if (info !== undefined && !info.wasClean) throw connection.fatal ?? closedError(info.code)
      },
      abort: (error) => {
        this.destroy(error)
      }
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
    // Node keeps a write made while the last one is being flushed, and _write would refuse it
    // only once that flush ended, which a peer that stopped reading may never let happen. It
    // cannot be delivered once the close started: the ending is bounded from now.
    if (this.#heldWrite !== undefined && !this.#connection.acceptsWrites) {
      this.#connection.refuseWrite()
    }
    return typeof encoding === 'function'
      ? super.write(chunk, encoding)
      : super.write(chunk, encoding as BufferEncoding, callback)
  }

  /** `end(chunk)` writes without going through write(), so it is checked here too. */
  override end(callback?: () => void): this
  override end(chunk: unknown, callback?: () => void): this
  override end(chunk: unknown, encoding: BufferEncoding, callback?: () => void): this
  override end(...args: unknown[]): this {
    const hasChunk = args.length > 0 && typeof args[0] !== 'function' && args[0] != null
    if (this.#writeFace === 'sink' && (hasChunk || this.#sinkRun?.draining === true)) {
      throw new WsDuplexError(
        'ERR_FACE_CONFLICT',
        '`end()` cannot be used while `sink()` is in use (the sink ends the stream itself)'
      )
    }
    if (hasChunk) this.#writeFace ??= 'stream'
    return super.end(...(args as Parameters<Duplex['end']>))
  }

  /** Ends the write side from within (the sink's own end, close()): no face check. */
  #endWriteSide(): void {
    if (!this.writableEnded) super.end()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    if (this.#refuseWrite(callback)) return
    this.#admit(callback, chunk.length, this.#pushWritten(chunk))
  }

  // Node hands over everything it buffered while the last write was being flushed: the send
  // queue merges it into frames.
  override _writev(chunks: { chunk: Buffer }[], callback: WriteCallback): void {
    if (this.#refuseWrite(callback)) return
    let bytes = 0
    let end: number | undefined
    for (const { chunk } of chunks) {
      end = this.#pushWritten(chunk) ?? end
      bytes += chunk.length
    }
    this.#admit(callback, bytes, end)
  }

  /**
   * Queues a written chunk. A small one is copied (a copy of a few KiB costs less than waiting
   * a turn for the flush): its write can be answered at once, and a burst of small writes stays
   * together here, one frame, which `destroy()` still sends. A large one is sent from the
   * writer's memory: returns the stream position its write must see flushed first.
   */
  #pushWritten(chunk: Buffer): number | undefined {
    if (chunk.length < COPY_BELOW) {
      this.#connection.push(Buffer.from(chunk))
      return undefined
    }
    return this.#connection.push(chunk)
  }

  #holdWrite(callback: WriteCallback, bytes: number): void {
    this.#heldWrite = callback
    this.#heldWriteBytes = bytes
  }

  /** Takes the held write's callback (if any) to answer it. */
  #takeHeldWrite(): WriteCallback | undefined {
    const callback = this.#heldWrite
    this.#heldWrite = undefined
    this.#heldWriteBytes = 0
    return callback
  }

  /** A write once the connection is closing cannot be delivered: that is a stream error. */
  #refuseWrite(callback: WriteCallback): boolean {
    if (this.#connection.acceptsWrites) return false
    this.#holdWrite(callback, this.writableLength)
    this.#heldWriteRefused = true
    this.#connection.refuseWrite()
    return true
  }

  /**
   * Answers the write while the queued and unsent bytes are under the high water mark, and,
   * when it queued views of the writer's memory, once those are flushed up to stream position
   * `end` (Node's contract: after the callback the buffer may be reused). Node keeps what is
   * written meanwhile and hands it over in one `_writev`. While connecting there is no room,
   * so a failed handshake fails every write.
   */
  #admit(callback: WriteCallback, bytes: number, end: number | undefined): void {
    this.#holdWrite(callback, bytes)
    this.#heldWriteEnd = end
    this.#releaseHeldWrite()
  }

  #releaseHeldWrite(): void {
    if (this.#heldWrite === undefined || this.#connection.fatal !== undefined) return
    // Frames sent before the refusal are no news for a chunk that was never queued.
    if (this.#heldWriteRefused) return
    const connection = this.#connection
    if (!connection.hasRoom) return
    const end = this.#heldWriteEnd
    if (end !== undefined && connection.sentBytes < end && !connection.allInKernel) return
    this.#takeHeldWrite()?.()
  }

  /**
   * Whether letting go with `error` cuts a transfer short, so that the peer must get 1011 and
   * not take the ending for a complete transfer: a real error; a sink whose source has not
   * ended; chunks Node still buffers (they would be dropped); or an abort (`pipeline()`'s
   * signal) while writes were not ended. A plain destroy() or `break` with the write side idle
   * is a clean stop: every written byte went out (the request of a request/response, say).
   */
  #cutsTransferShort(error: Error | null): boolean {
    if (isFailure(error)) return true
    if (this.#sinkRun?.draining === true) return true
    if (this.writableLength > this.#heldWriteBytes) return true
    return error !== null && this.#writeFace === 'stream' && !this.writableEnded
  }

  /** A failed connection settles a running sink, after the frames queued for `source`. */
  #stopSinkAfterSource(error: Error): void {
    this.#sinkRun?.stopAfterReader(this.#source, error, this.#connection.closeTimeout)
  }

  override _final(callback: WriteCallback): void {
    this.#connection.finish(callback)
  }

  // -------------------------------------------------------------- the Duplex face: reading

  override _read(): void {
    this.#connection.resumeReading()
  }

  /** Flowing mode would wait for bytes that go to `source` once it is in use. */
  override resume(): this {
    if (this.#readFace === 'source') throw readFaceConflict('resume()')
    return super.resume()
  }

  /** A reader that stops while an error waits for it may leave a blocked writer hanging. */
  override pause(): this {
    super.pause()
    if (this.#connection.fatal !== undefined) {
      process.nextTick(readerProgressed, this.#connection)
    }
    return this
  }

  /** Every consumer (data events, pipe, async iteration) reads through here. */
  override read(size?: number): ReturnType<Duplex['read']> {
    // read(0) only asks the stream to fill or end (Node calls it itself); any other is a reader.
    if (size !== 0) {
      if (this.#readFace === 'source') throw readFaceConflict('read()')
      this.#readFace ??= 'stream'
    }
    // The base signature, unchanged: @types/node types it loosely and NodeJS.ReadableStream
    // (which pipe destinations expect) depends on that.
    const chunk: Buffer | null = super.read(size)
    // A fatal error waits until the bytes that arrived before it have been read.
    if (this.#connection.fatal !== undefined && this.readableLength === 0) {
      process.nextTick(readerProgressed, this.#connection)
    }
    return chunk
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    if (this.#readFace === 'source') throw readFaceConflict('pipe()')
    this.#readFace = 'stream'
    // A pipe into another stream is a reader that resumes once its destination drains; a
    // pipe into this stream is not (it waits on our own writes).
    if ((destination as unknown) !== this) {
      this.#pipesElsewhere++
      const onUnpipe = (source: unknown): void => {
        if (source !== this) return
        destination.removeListener('unpipe', onUnpipe)
        this.#pipesElsewhere--
      }
      destination.on('unpipe', onUnpipe)
    }
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
    return this.#connection.close(code, reason)
  }

  /**
   * Sends a ping and resolves with the round-trip time in milliseconds when its pong arrives.
   * Rejects with `ERR_STREAM_CLOSED` if the connection closes first.
   */
  ping(data?: Uint8Array): Promise<number> {
    return this.#connection.ping(data)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const connection = this.#connection
    const failure = error ?? closedError(connection.closeInfo?.code)
    const asFailure = this.#cutsTransferShort(error)
    this.#takeHeldWrite()?.(failure)
    this.#source?.fail(failure)
    // Once the connection is over it has already settled a running sink (or will, after the
    // source's frames); this destroy only lets go of the object.
    if (connection.closeInfo === undefined) this.#stopSinkAfterSource(failure)
    connection.release(failure, asFailure, () => callback(error))
  }

  static {
    // The engine's view of a WsDuplex. Defined here, inside the class body, so it may reach the
    // private members; a separate object keeps the engine hooks off the public API.
    class DuplexFace implements ConnectionFace {
      readonly #duplex: WsDuplex

      constructor(duplex: WsDuplex) {
        this.#duplex = duplex
      }

      makeEvents(): DuplexEvents {
        return new DuplexEvents()
      }

      deliver(data: Uint8Array): boolean {
        const duplex = this.#duplex
        const source = duplex.#source
        return source !== undefined ? source.push(data) : duplex.push(data)
      }

      get unreadBytes(): number {
        const duplex = this.#duplex
        return duplex.#source?.queuedCost ?? duplex.readableLength
      }

      writable(): void {
        this.#duplex.#releaseHeldWrite()
      }

      endWriting(): void {
        // A running sink's next chunk is refused (closedWhileSinking), without a teardown.
        this.#duplex.#endWriteSide()
      }

      connectionClosed(error: WsDuplexError | undefined): void {
        const duplex = this.#duplex
        // A destroyed stream has settled its sink already (or will, after its reader).
        if (error === undefined) {
          if (!duplex.destroyed) duplex.#sinkRun?.endWithStream()
        } else duplex.#stopSinkAfterSource(error)
        duplex[kOnConnectionClosed]?.(duplex)
      }

      /**
       * The error waits for the reader to drain the bytes that arrived before it, unless a
       * writer is blocked on us: then nobody may ever read (a pipe into ourselves, say) and the
       * writer must learn now.
       */
      surfaceFatal(error: WsDuplexError): void {
        const duplex = this.#duplex
        if (duplex.destroyed) return
        if (duplex.#source !== undefined) {
          // The source throws it once its queued frames are read.
          duplex.#source.fail(error)
          duplex.destroy(error)
          return
        }
        // A reader that is consuming will drain the bytes and come back through read(); one
        // that stops (pause, or a pipe into ourselves held by our blocked write) is re-asked.
        // A write still waiting for its callback is blocked: after the failure its bytes will
        // never be flushed, and its writer may be all there is (one that never reads).
        const writerBlocked = duplex.#heldWrite !== undefined || duplex.#connection.finishing
        const readerConsuming =
          duplex.readableFlowing === true ||
          duplex.listenerCount('readable') > 0 ||
          duplex.#pipesElsewhere > 0
        if (duplex.readableLength === 0 || (writerBlocked && !readerConsuming)) {
          duplex.destroy(error)
        }
      }

      /**
       * Every byte accepted so far was handed to the OS before the close frame. Releasing the
       * held callbacks lets Node pass on what it still buffers; those writes are refused
       * (ERR_STREAM_CLOSED), so no accepted byte is dropped silently.
       */
      cleanEnd(finished: (() => void) | undefined): void {
        const duplex = this.#duplex
        const write = duplex.#takeHeldWrite()
        write?.(duplex.#heldWriteRefused ? closedError(duplex.#connection.lastCloseCode) : null)
        finished?.()
        duplex.#readEnded = true
        duplex.push(null)
        if (!duplex.writableFinished) duplex.once('end', destroyAfterEnd)
        duplex.#source?.end()
        // Lets the Readable emit 'end' (then 'close') once nothing is left unread, with no
        // reader at all too (source mode, a writer only), as a net.Socket does; a reader that
        // has bytes left to take still gets them first.
        duplex.read(0)
      }
    }
    faceOf = (duplex) => new DuplexFace(duplex)
  }
}

function readerProgressed(connection: Connection): void {
  connection.readerProgressed()
}

/** After a clean close the write side has nowhere to go: release the stream once read. */
function destroyAfterEnd(this: WsDuplex): void {
  if (!this.destroyed) this.destroy()
}

function ignoreError(): void {}

/**
 * The deferred destroy of a `break` while a sink ran. If the sink reached its end meanwhile
 * (or close() was called), the close handshake is under way: let it finish instead.
 */
function destroyDuplex(duplex: WsDuplex): void {
  if (!duplex.destroyed && !duplex.writableEnded) duplex.destroy()
}

function readFaceConflict(what: string): WsDuplexError {
  return new WsDuplexError('ERR_FACE_CONFLICT', `${what} cannot be used once \`source\` is in use`)
}

/**
 * What `for await (const chunk of duplex)` iterates: Buffers, typed so that it overrides
 * Readable's iterator under old and new `@types/node` alike (an iterable of itself, disposable).
 */
export interface ChunkIterator<T extends Uint8Array> extends AsyncIterator<T, undefined> {
  [Symbol.asyncIterator](): ChunkIterator<T>
  [Symbol.asyncDispose](): Promise<void>
}

/** `await using` on the iterator: stops it, as leaving a `for await` loop would. */
async function disposeIterator(this: AsyncIterator<unknown>): Promise<void> {
  await this.return?.()
}

function refuseReadListener(this: WsDuplex, event: string | symbol): void {
  if (event === 'data' || event === 'readable') {
    throw readFaceConflict(`a '${event}' listener`)
  }
}
