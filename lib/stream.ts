/**
 * WsStream: the source/sink face over a WHATWG WebSocket (browsers, Node's global WebSocket,
 * undici's). The same engine as WsDuplex (connection.ts) with the same promises, minus what the
 * platform cannot do: see whatwg-socket.ts.
 */
import type { Duplex as ItDuplex, Source } from 'it-stream-types'
import { CloseCode } from './close-codes.js'
import { Connection, closedError, isFailure, type ConnectionFace } from './connection.js'
import { WsDuplexError } from './errors.js'
import { StreamEvents, type CloseInfo } from './events.js'
import {
  closedWhileSinking,
  SinkRun,
  SourceQueue,
  type ChunkWriter,
  type SinkChunk
} from './iterable.js'
import {
  DEFAULTS,
  integerOption,
  normalizeOptions,
  type NormalizedOptions,
  type WsDuplexOptions
} from './options.js'
import { WhatwgSocket, isWhatwgWebSocket, type WhatwgWebSocket } from './whatwg-socket.js'

export interface WsStreamOptions extends WsDuplexOptions {
  /**
   * Largest incoming message in bytes. The platform has already received it when we see its
   * size, so a bigger one ends the stream with `ERR_PAYLOAD_TOO_LARGE` (close 4009).
   * @default 1048576 (1 MiB)
   */
  maxPayload?: number
}

/** Internal: resolves when the socket opens, rejects with the connect error (connect()). */
export const kOpened = Symbol('ws-duplex.opened')

export class WsStream implements ItDuplex<
  AsyncIterable<Uint8Array>,
  Source<SinkChunk>,
  Promise<void>
> {
  readonly #socket: WhatwgWebSocket
  readonly #connection: Connection
  readonly #source: SourceQueue
  readonly #sink: (source: Source<SinkChunk>) => Promise<void>
  #sinkRun: SinkRun | undefined
  /** Ending the write side: resolves once our close frame is sent. */
  #finished: Promise<void> | undefined
  #closeError: WsDuplexError | undefined
  #destroyed = false

  /**
   * @param socket a WHATWG WebSocket, CONNECTING or OPEN. WsStream takes it over: do not send
   *   on it or listen for its messages yourself. Its `binaryType` becomes `'arraybuffer'`.
   */
  constructor(socket: WhatwgWebSocket, options?: WsStreamOptions) {
    if (!isWhatwgWebSocket(socket)) {
      throw new TypeError(`Expected \`socket\` to be a WHATWG WebSocket, got ${typeof socket}`)
    }
    if (socket.readyState !== 0 && socket.readyState !== 1) {
      throw new WsDuplexError('ERR_STREAM_CLOSED', 'Expected `socket` to be CONNECTING or OPEN')
    }
    const { maxPayload, normalized } = normalizeStreamOptions(options)
    this.#socket = socket
    this.#source = new SourceQueue(
      {
        resumeReading: () => {},
        abandon: (error) => {
          // A `break` while a sink runs: its source may be about to end; give it a turn.
          if (error === undefined && this.#sinkRun?.draining === true) {
            // If the sink reached its end (or close() was called), let that close finish.
            setTimeout(() => {
              if (this.#finished === undefined) this.destroy()
            }, 0)
            return
          }
          const connection = this.#connection
          // Once the connection failed, letting go must keep its error (as WsDuplex's does).
          this.destroy(error ?? (connection.closeInfo === undefined ? undefined : connection.fatal))
        }
      },
      normalized.readableHighWaterMark
    )
    this.#sink = (source) => this.#runSink(source)
    this.#connection = new Connection(
      new WhatwgSocket(socket, maxPayload),
      this.#face(),
      normalized
    )
  }

  /**
   * The bytes received (it-stream-types `Source`); `break` closes with 1000 (4011 if a sink is
   * still sending). Iterate once.
   */
  get source(): AsyncIterable<Uint8Array> {
    return this.#source
  }

  /**
   * Sends every chunk of `source`, awaiting backpressure, then closes with 1000. Resolves once
   * our close frame is sent; rejects with the stream's error. Works detached from the object.
   */
  get sink(): (source: Source<SinkChunk>) => Promise<void> {
    return this.#sink
  }

  /** Out-of-band events: warnings and the close handshake (no pings: the API has none). */
  get events(): StreamEvents {
    return this.#connection.events as StreamEvents
  }

  /** The wrapped WebSocket, for reading `protocol` or `url`. */
  get socket(): WhatwgWebSocket {
    return this.#socket
  }

  /** Set once the connection is over: its close code, reason, and whether it ended cleanly. */
  get closeInfo(): CloseInfo | undefined {
    return this.#connection.closeInfo
  }

  /**
   * Graceful close: what the sink already queued is flushed, then a close frame with `code`
   * (codes a WHATWG socket may not send go out as 4000 + (code - 1000)). Resolves once the
   * connection is over.
   */
  close(code: number = CloseCode.Normal, reason = ''): Promise<CloseInfo> {
    return this.#connection.close(code, reason)
  }

  /** Always rejects with `ERR_UNSUPPORTED`: a WHATWG WebSocket cannot send pings. */
  ping(data?: Uint8Array): Promise<number> {
    return this.#connection.ping(data)
  }

  /**
   * Lets go at once: what was written in this tick (up to one frame) and a best-effort close
   * frame go out, the source and sink fail with `error` (or ERR_STREAM_CLOSED), and nothing
   * more is delivered. The close frame is 1000 without an error and with no sink still running,
   * 4011 otherwise (a peer must not take a sink cut short for a complete transfer).
   */
  destroy(error?: Error): void {
    if (this.#destroyed) return
    this.#destroyed = true
    const connection = this.#connection
    const failure = error ?? closedError(connection.closeInfo?.code)
    this.#source.fail(failure)
    const asFailure = isFailure(error) || this.#sinkRun?.draining === true
    // Once the connection is over it has already settled a running sink (or will, after the
    // source's frames).
    if (connection.closeInfo === undefined) this.#stopSinkAfterSource(failure)
    connection.release(failure, asFailure, ignore)
  }

  /** As WsDuplex's: a sink's rejection must not overtake the frames still queued for `source`. */
  #stopSinkAfterSource(error: Error): void {
    this.#sinkRun?.stopAfterReader(this.#source, error, this.#connection.closeTimeout)
  }

  /** @internal */
  [kOpened](): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#connection.opened) {
        resolve()
        return
      }
      const events = this.events
      const onOpen = (): void => {
        events.off('close', onClose)
        resolve()
      }
      const onClose = (): void => {
        events.off('open', onOpen)
        reject(this.#closeError ?? closedError())
      }
      events.once('open', onOpen)
      events.once('close', onClose)
    })
  }

  async #runSink(source: Source<SinkChunk>): Promise<void> {
    if (this.#sinkRun !== undefined) {
      throw new WsDuplexError('ERR_FACE_CONFLICT', '`sink()` can be called only once')
    }
    const connection = this.#connection
    if (this.#destroyed || this.#finished !== undefined || connection.closeInfo !== undefined) {
      throw connection.fatal ?? this.#closeError ?? closedError(connection.lastCloseCode)
    }
    this.#sinkRun = new SinkRun(this.#writer())
    await this.#sinkRun.run(source)
  }

  #writer(): ChunkWriter {
    const connection = this.#connection
    return {
      write: (chunk) => {
        if (this.#destroyed) throw connection.fatal ?? closedError(connection.lastCloseCode)
        if (this.#finished !== undefined) throw connection.fatal ?? closedWhileSinking()
        if (!connection.acceptsWrites) return connection.refuseSinkChunk()
        connection.push(chunk)
        return connection.hasRoom
      },
      drained: () => connection.whenRoom(),
      finish: () => this.#finish(),
      abort: (error) => this.destroy(error)
    }
  }

  /** Ends the write side once: flush, then our close frame. */
  #finish(): Promise<void> {
    return (this.#finished ??= new Promise<void>((resolve, reject) => {
      this.#connection.finish((error) => (error ? reject(error) : resolve()))
    }))
  }

  /** The engine's view of this stream (few streams per page: a closure object is fine). */
  #face(): ConnectionFace {
    const source = this.#source
    return {
      makeEvents: () => new StreamEvents(),
      deliver: (data) => source.push(data),
      get unreadBytes() {
        return source.queuedCost
      },
      writable: ignore,
      endWriting: () => {
        // A running sink's next chunk is refused (closedWhileSinking), without a teardown.
        this.#finish().catch(ignore)
      },
      connectionClosed: (error) => {
        this.#closeError = error
        // A destroyed stream has settled its sink already (or will, after its reader).
        if (error === undefined) {
          if (!this.#destroyed) this.#sinkRun?.endWithStream()
        } else this.#stopSinkAfterSource(error)
      },
      surfaceFatal: (error) => {
        // The source throws it once its queued frames are read.
        source.fail(error)
        this.destroy(error)
      },
      cleanEnd: (finished) => {
        finished?.()
        source.end()
      }
    }
  }
}

/**
 * Wraps a WHATWG WebSocket (CONNECTING or OPEN) as a source/sink byte stream. The same as
 * `new WsStream(socket, options)`.
 */
export function fromWhatwgWebSocket(socket: WhatwgWebSocket, options?: WsStreamOptions): WsStream {
  return new WsStream(socket, options)
}

/** Validates WsStream's options (throwing TypeError / RangeError), so connect() can first. */
export function normalizeStreamOptions(options: WsStreamOptions | undefined): {
  maxPayload: number
  normalized: NormalizedOptions
} {
  const maxPayload = integerOption(
    'maxPayload',
    options?.maxPayload,
    DEFAULTS.maxPayload,
    1,
    2 ** 32
  )
  return { maxPayload, normalized: normalizeOptions(withoutMaxPayload(options)) }
}

function withoutMaxPayload(options: WsStreamOptions | undefined): WsDuplexOptions | undefined {
  if (typeof options !== 'object' || options === null || !('maxPayload' in options)) {
    return options
  }
  const rest: WsStreamOptions = { ...options }
  delete rest.maxPayload
  return rest
}

function ignore(): void {}
