/**
 * The it-stream-types face: `sink(source)` drains an (async) iterable of Uint8Array or
 * Uint8ArrayList into the same write path the Duplex face uses, so both share one backpressure.
 */
import type { Source } from 'it-stream-types'
import type { Uint8ArrayList } from 'uint8arraylist'
import { WsDuplexError } from './errors.js'

export type SinkChunk = Uint8Array | Uint8ArrayList

/** What the sink needs from its owner: the Duplex write path seen from outside. */
export interface ChunkWriter {
  /** Writes one chunk; false means wait for `drained()` before the next. */
  write(chunk: Uint8Array): boolean
  /** Resolves on 'drain'; rejects when the stream fails or closes first. */
  drained(): Promise<void>
  /** Ends the writable side and resolves once every byte is flushed and the close frame sent. */
  finish(): Promise<void>
  /** The source failed: tear the stream down with this error. */
  abort(error: Error): void
}

/**
 * Copies `source` into `writer`, awaiting backpressure; rejects with the stream's error. A chunk
 * that is not bytes (a string, a number, a Uint16Array...) fails the sink like a throwing
 * source: the chunks before it are sent, the peer gets 1011, the sink rejects with a TypeError.
 */
export async function drainSource(writer: ChunkWriter, source: Source<SinkChunk>): Promise<void> {
  try {
    for await (const chunk of source as AsyncIterable<unknown> | Iterable<unknown>) {
      if (chunk instanceof Uint8Array) {
        if (!writer.write(chunk)) await writer.drained()
        continue
      }
      // A Uint8ArrayList iterates its own views: its bytes are written without a copy.
      for (const part of iterableChunk(chunk)) {
        if (!(part instanceof Uint8Array)) throw invalidChunk(chunk)
        if (!writer.write(part)) await writer.drained()
      }
    }
  } catch (error) {
    const failure = error instanceof Error ? error : new Error(String(error))
    writer.abort(failure)
    throw failure
  }
  await writer.finish()
}

/** A Uint8ArrayList, or anything else iterable that is not a string, is taken apart. */
function iterableChunk(chunk: unknown): Iterable<unknown> {
  if (typeof chunk === 'object' && chunk !== null && Symbol.iterator in chunk) {
    return chunk as Iterable<unknown>
  }
  throw invalidChunk(chunk)
}

/** Named like Node's own error for a bad `write()` chunk; the message shows no payload. */
function invalidChunk(chunk: unknown): TypeError {
  const got =
    chunk === null
      ? 'null'
      : typeof chunk === 'object'
        ? `an instance of ${(chunk as object).constructor?.name ?? 'Object'}`
        : `type ${typeof chunk}`
  return Object.assign(
    new TypeError(
      `Expected each \`sink()\` chunk to be a Uint8Array or a Uint8ArrayList, got ${got}`
    ),
    { code: 'ERR_INVALID_ARG_TYPE' }
  )
}

/** What the source queue needs from its owner. */
export interface SourceOwner {
  /** The queue fell under the high water mark: reading may resume. */
  resumeReading(): void
  /** The consumer stopped early (`break`) or threw into the iterator: release the stream. */
  abandon(error?: Error): void
}

/**
 * The bytes for the `source` face: a bounded queue the socket fills and one consumer drains.
 * Frames are handed on as they came (views, never concatenated), and a ready frame costs no
 * more than one resolved promise.
 */
export class SourceQueue implements AsyncIterator<Uint8Array>, AsyncIterable<Uint8Array> {
  readonly #owner: SourceOwner
  readonly #highWaterMark: number
  #chunks: Uint8Array[] = []
  #head = 0
  #queuedBytes = 0
  #ended = false
  #error: Error | undefined
  #waiter:
    | { resolve: (result: IteratorResult<Uint8Array>) => void; reject: (error: Error) => void }
    | undefined
  #iterated = false

  constructor(owner: SourceOwner, highWaterMark: number) {
    this.#owner = owner
    this.#highWaterMark = highWaterMark
  }

  get queuedBytes(): number {
    return this.#queuedBytes
  }

  /** Adds a frame; false means the queue is at the mark and the socket should pause. */
  push(chunk: Uint8Array): boolean {
    const waiter = this.#waiter
    if (waiter !== undefined) {
      this.#waiter = undefined
      waiter.resolve({ value: chunk, done: false })
      return true
    }
    this.#chunks.push(chunk)
    this.#queuedBytes += chunk.length
    return this.#queuedBytes < this.#highWaterMark
  }

  /** A clean end: the consumer gets every queued frame, then `done`. */
  end(): void {
    this.#ended = true
    this.#settleWaiter()
  }

  /** A fatal error: thrown once the queued frames are consumed (a clean end already seen wins). */
  fail(error: Error): void {
    if (this.#ended) return
    this.#error ??= error
    this.#settleWaiter()
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#head < this.#chunks.length) {
      const chunk = this.#chunks[this.#head] as Uint8Array
      this.#chunks[this.#head++] = EMPTY
      if (this.#head === this.#chunks.length) {
        this.#chunks = []
        this.#head = 0
      }
      const wasFull = this.#queuedBytes >= this.#highWaterMark
      this.#queuedBytes -= chunk.length
      if (wasFull && this.#queuedBytes < this.#highWaterMark) this.#owner.resumeReading()
      return Promise.resolve({ value: chunk, done: false })
    }
    if (this.#error !== undefined) return Promise.reject(this.#error)
    if (this.#ended) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject }
    })
  }

  return(): Promise<IteratorResult<Uint8Array>> {
    if (!this.#ended && this.#error === undefined) this.#owner.abandon()
    this.#ended = true
    this.#chunks = []
    return Promise.resolve({ value: undefined, done: true })
  }

  throw(error?: unknown): Promise<IteratorResult<Uint8Array>> {
    this.#owner.abandon(error instanceof Error ? error : new Error(String(error)))
    this.#ended = true
    this.#chunks = []
    return Promise.resolve({ value: undefined, done: true })
  }

  /** The one iterator over this queue; like every iterator, it is an iterable of itself. */
  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    if (this.#iterated) {
      throw new WsDuplexError('ERR_FACE_CONFLICT', '`source` can be iterated only once')
    }
    this.#iterated = true
    const iterator: AsyncIterableIterator<Uint8Array> = {
      next: () => this.next(),
      return: () => this.return(),
      throw: (error?: unknown) => this.throw(error),
      [Symbol.asyncIterator]: () => iterator
    }
    return iterator
  }

  #settleWaiter(): void {
    const waiter = this.#waiter
    if (waiter === undefined) return
    this.#waiter = undefined
    if (this.#error !== undefined) waiter.reject(this.#error)
    else waiter.resolve({ value: undefined, done: true })
  }
}

const EMPTY = new Uint8Array(0)
