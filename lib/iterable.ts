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
    const iterable = source as Partial<AsyncIterable<unknown> & Iterable<unknown>> | null
    if (typeof iterable?.[Symbol.asyncIterator] === 'function') {
      for await (const chunk of iterable as AsyncIterable<unknown>) {
        if (!(chunk instanceof Uint8Array)) await writeParts(writer, chunk)
        else if (!writer.write(chunk)) await writer.drained()
      }
    } else if (typeof iterable?.[Symbol.iterator] === 'function') {
      // An array or a generator: no promise and no turn of the microtask queue per chunk, only
      // where backpressure makes the loop wait. `for await` would wait for a promise among the
      // chunks, so this loop does too.
      for (const item of iterable as Iterable<unknown>) {
        const chunk = item instanceof Uint8Array || !isThenable(item) ? item : await item
        if (!(chunk instanceof Uint8Array)) await writeParts(writer, chunk)
        else if (!writer.write(chunk)) await writer.drained()
      }
    } else {
      throw invalidArgType('the source of `sink()` to be an iterable or an async iterable', source)
    }
  } catch (error) {
    const failure = error instanceof Error ? error : new Error(String(error))
    writer.abort(failure)
    throw failure
  }
  await writer.finish()
}

/**
 * The slow path: a Uint8Array from another realm, or a Uint8ArrayList, whose views are written
 * without a copy, each awaiting backpressure (a large list must not be queued whole).
 */
async function writeParts(writer: ChunkWriter, chunk: unknown): Promise<void> {
  if (isForeignBytes(chunk)) {
    if (!writer.write(chunk)) await writer.drained()
    return
  }
  const parts = chunk as Partial<Iterable<unknown>> | null
  if (typeof chunk !== 'object' || typeof parts?.[Symbol.iterator] !== 'function') {
    throw invalidChunk(chunk)
  }
  for (const part of parts as Iterable<unknown>) {
    if (!(part instanceof Uint8Array) && !isForeignBytes(part)) throw invalidChunk(chunk)
    if (!writer.write(part)) await writer.drained()
  }
}

/** A Uint8Array from another realm (a vm context, a Jest environment) fails `instanceof`. */
function isForeignBytes(value: unknown): value is Uint8Array {
  return Object.prototype.toString.call(value) === '[object Uint8Array]'
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}

/** Named like Node's own error for a bad `write()` chunk; the message shows no payload. */
function invalidArgType(expected: string, value: unknown): TypeError {
  return Object.assign(new TypeError(`Expected ${expected}, got ${typeName(value)}`), {
    code: 'ERR_INVALID_ARG_TYPE'
  })
}

function invalidChunk(chunk: unknown): TypeError {
  return invalidArgType('each `sink()` chunk to be a Uint8Array or a Uint8ArrayList', chunk)
}

/** What a value is, without showing it (it may be payload). */
function typeName(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value !== 'object') return `type ${typeof value}`
  return `an instance of ${(value as object).constructor?.name ?? 'Object'}`
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
