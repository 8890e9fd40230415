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
  /** Writes one chunk; false means wait for `drained()` before the next. Throws once closed. */
  write(chunk: Uint8Array): boolean
  /** Resolves on 'drain'; rejects when the stream fails or closes first. */
  drained(): Promise<void>
  /** Ends the writable side and resolves once every byte is flushed and the close frame sent. */
  finish(): Promise<void>
  /** The source failed (it threw, or gave a chunk that is not bytes): tear the stream down. */
  abort(error: Error): void
}

/** What a sink rejects with when the write side ended (close()) before its source did. */
export function closedWhileSinking(): WsDuplexError {
  return new WsDuplexError(
    'ERR_STREAM_CLOSED',
    'The stream was closed before the source of `sink()` ended: its later chunks were not sent'
  )
}

/** Only `return()` is called on it from outside the loop that owns it. */
type SourceIterator = { return?: () => unknown }

/**
 * One sink at work: copies its source into the writer, awaiting backpressure. A chunk that is
 * not bytes (a string, a number, a Uint16Array...) fails the sink like a throwing source: the
 * chunks before it are sent, the peer gets 1011, the sink rejects with a TypeError.
 *
 * The stream can stop it early: failed or destroyed (it rejects), or closed cleanly (it
 * resolves: every byte it wrote was delivered). Its promise then settles at once, without
 * waiting for a source that may never yield again, and the source is told to clean up
 * (`return()`), as a `for await` loop that stops would.
 */
export class SinkRun {
  readonly #writer: ChunkWriter
  #iterator: SourceIterator | undefined
  #draining = true
  #stopped = false
  /** The deferred rejection of stopAfterReader, cleared once the sink settles. */
  #stopTimer: ReturnType<typeof setTimeout> | undefined
  #settle: (error?: Error) => void = noop

  /** Draining from the start: a sync source can fail the stream before run() returns. */
  constructor(writer: ChunkWriter) {
    this.#writer = writer
  }

  /** Settles when every byte is flushed and the close frame sent, or with the stream's error. */
  run(source: Source<SinkChunk>): Promise<void> {
    const stopped = new Promise<void>((resolve, reject) => {
      this.#settle = (error) => {
        clearTimeout(this.#stopTimer)
        this.#stopTimer = undefined
        if (error === undefined) resolve()
        else reject(error)
      }
    })
    // Once stopped, only the stop settles the sink: the loop's own ending (a rejected wait for
    // room, say) must not overtake a rejection that waits for the reader.
    const drained = this.#drain(this.#writer, source).then(
      () => (this.#stopped ? stopped : undefined),
      (error: unknown) => {
        if (this.#stopped) return stopped
        throw error
      }
    )
    // One race per sink, not per chunk: the loop itself pays nothing for being stoppable.
    return Promise.race([drained, stopped])
  }

  /** Whether the source is still being copied (the sink has not reached its end). */
  get draining(): boolean {
    return this.#draining
  }

  /** The stream can take no more: the sink rejects with `error` unless its source had ended. */
  stop(error: Error): void {
    this.#stopEarly(error)
  }

  /**
   * The connection ended cleanly while the source still ran: everything the sink wrote was
   * delivered, so it resolves; what the source might still give could never be sent.
   */
  endWithStream(): void {
    this.#stopEarly(undefined)
  }

  /**
   * Stops now (the source is told to stop at once) but rejects with `error` only once the
   * frames queued for `source` are taken, so that the rejection cannot overtake them (it-pipe
   * merges both into one output); at once if nobody is reading `source`, and after `ms` at
   * most: a reader that stopped must not hold the sink forever.
   */
  stopAfterReader(source: SourceQueue | undefined, error: Error, ms: number): void {
    if (!this.#draining || this.#stopped) return
    this.#stopped = true
    this.#closeSource()
    if (source?.beingRead !== true) {
      this.#settle(error)
      return
    }
    const timer = setTimeout(settleRun, ms, this.#settle, error)
    // Not a reason to keep a process alive (browsers have no unref).
    ;(timer as { unref?: () => void }).unref?.()
    this.#stopTimer = timer
    source.whenDrained(() => this.#settle(error))
  }

  #stopEarly(error: Error | undefined): void {
    if (!this.#draining || this.#stopped) return
    this.#stopped = true
    this.#settle(error)
    this.#closeSource()
  }

  async #drain(writer: ChunkWriter, source: Source<SinkChunk>): Promise<void> {
    try {
      const opened = this.#open(writer, source)
      if (opened.async) await this.#drainAsync(writer, opened.iterator)
      else await this.#drainSync(writer, opened.iterator)
    } catch (error) {
      // The stream's own error (closed, reset...) is not the source's fault: no abort, which
      // would also skip the wait that lets a reader take the bytes that came before it.
      this.#closeSource()
      throw error
    } finally {
      this.#draining = false
      // Done with it: the sink must not keep the source (a large array, say) alive.
      this.#iterator = undefined
    }
    if (!this.#stopped) await writer.finish()
  }

  /**
   * Takes the source's iterator, as `for await` would. Getting it is the source's own code (a
   * getter, a factory), so its throwing fails the sink like a throwing `next()`.
   */
  #open(
    writer: ChunkWriter,
    source: Source<SinkChunk>
  ):
    | { async: true; iterator: AsyncIterator<unknown> }
    | { async: false; iterator: Iterator<unknown> } {
    const iterable = source as Partial<AsyncIterable<unknown> & Iterable<unknown>> | null
    try {
      const asyncIterator = iterable?.[Symbol.asyncIterator]
      if (typeof asyncIterator === 'function') {
        return { async: true, iterator: asyncIterator.call(iterable) }
      }
      const syncIterator = iterable?.[Symbol.iterator]
      if (typeof syncIterator === 'function') {
        return { async: false, iterator: syncIterator.call(iterable) }
      }
    } catch (error) {
      throw this.#sourceFailed(writer, error, true)
    }
    throw this.#sourceFailed(
      writer,
      invalidArgType('the source of `sink()` to be an iterable or an async iterable', source)
    )
  }

  async #drainAsync(writer: ChunkWriter, iterator: AsyncIterator<unknown>): Promise<void> {
    this.#iterator = iterator
    for (;;) {
      let done: boolean | undefined
      let chunk: unknown
      try {
        ;({ done, value: chunk } = resultOf(await iterator.next()))
      } catch (error) {
        throw this.#sourceFailed(writer, error, true)
      }
      if (this.#stopped || done === true) return
      // The common chunk inline: an async call per chunk would cost a promise and a turn.
      if (!(chunk instanceof Uint8Array)) await this.#writeOther(writer, chunk)
      else if (!writer.write(chunk)) await writer.drained()
      if (this.#stopped) return
    }
  }

  /**
   * An array or a generator: no promise and no turn of the microtask queue per chunk, only
   * where backpressure makes the loop wait. `for await` would wait for a promise among the
   * chunks, so this loop does too.
   */
  async #drainSync(writer: ChunkWriter, iterator: Iterator<unknown>): Promise<void> {
    this.#iterator = iterator
    for (;;) {
      let chunk: unknown
      try {
        const result = resultOf(iterator.next())
        if (result.done === true) return
        chunk = result.value
        if (!(chunk instanceof Uint8Array) && isThenable(chunk)) chunk = await chunk
      } catch (error) {
        throw this.#sourceFailed(writer, error, true)
      }
      if (this.#stopped) return
      if (!(chunk instanceof Uint8Array)) await this.#writeOther(writer, chunk)
      else if (!writer.write(chunk)) await writer.drained()
      if (this.#stopped) return
    }
  }

  /** The slow path: a Uint8Array from another realm, a Uint8ArrayList, or not bytes at all. */
  async #writeOther(writer: ChunkWriter, chunk: unknown): Promise<void> {
    if (isForeignBytes(chunk)) {
      if (!writer.write(chunk)) await writer.drained()
      return
    }
    if (!isUint8ArrayList(chunk)) throw this.#sourceFailed(writer, invalidChunk(chunk))
    // Its views are written without a copy, each awaiting backpressure: a large list must not
    // be queued whole.
    for (const part of chunk) {
      if (!writer.write(part)) await writer.drained()
      if (this.#stopped) return
    }
  }

  /** The source's fault: the stream is torn down (the peer gets 1011) with this error. */
  #sourceFailed(writer: ChunkWriter, error: unknown, nextThrew = false): Error {
    const failure = error instanceof Error ? error : new Error(String(error))
    // A source whose next() threw is finished and must not be asked to return(); one that gave
    // a bad chunk is told to stop, so its finally blocks run.
    if (nextThrew) this.#iterator = undefined
    writer.abort(failure)
    return failure
  }

  #closeSource(): void {
    const iterator = this.#iterator
    this.#iterator = undefined
    try {
      const closing: unknown = iterator?.return?.()
      if (isThenable(closing)) closing.then(noop, noop)
    } catch {
      // The source's cleanup failing changes nothing about how the sink ended.
    }
  }
}

/**
 * The typed arrays' own `Symbol.toStringTag` getter reads the internal [[TypedArrayName]] slot,
 * which holds across realms and cannot be faked by an object that only claims the tag.
 */
const typedArrayName = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype) as object,
  Symbol.toStringTag
)?.get

/** A Uint8Array from another realm (a vm context, a Jest environment) fails `instanceof`. */
function isForeignBytes(value: unknown): value is Uint8Array {
  return typedArrayName?.call(value) === 'Uint8Array'
}

/**
 * uint8arraylist's own brand check (a global symbol, so it holds across copies and realms),
 * written out: importing its isUint8ArrayList would pull the whole class into browser bundles.
 */
const kUint8ArrayList = Symbol.for('@achingbrain/uint8arraylist')

function isUint8ArrayList(value: unknown): value is Uint8ArrayList {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { [kUint8ArrayList]?: unknown })[kUint8ArrayList] === true
  )
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}

/** What `for await` checks of each `next()` result: it must be an object. */
function resultOf(result: unknown): IteratorResult<unknown> {
  if (typeof result === 'object' && result !== null) return result as IteratorResult<unknown>
  throw invalidArgType("each result of the `sink()` source's next() to be an object", result)
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
  #queuedCost = 0
  #ended = false
  #error: Error | undefined
  /** The oldest next() still waiting for a frame; an empty queue is the only time one waits. */
  #waiter: Waiter | undefined
  /**
   * Later calls made before the first one settled, oldest first: each gets the next frame in
   * turn, as an async generator's queued calls do. Rare, so kept apart from the common path.
   */
  #laterWaiters: Waiter[] | undefined
  #iterated = false
  /** The consumer let go (`return()` or `throw()`): like a finished generator, it is done. */
  #released = false
  /** Called once the consumer has taken every queued frame (or let go). */
  #onDrained: (() => void)[] | undefined

  constructor(owner: SourceOwner, highWaterMark: number) {
    this.#owner = owner
    this.#highWaterMark = highWaterMark
  }

  /**
   * What the queued frames hold: their bytes, and QUEUED_FRAME_COST more for each (its view,
   * buffer and event), so that a flood of 1-byte messages is bounded as large ones are.
   */
  get queuedCost(): number {
    return this.#queuedCost
  }

  /**
   * Whether a consumer is reading: it took the iterator and has not let go (so frames queued
   * now will be taken).
   */
  get beingRead(): boolean {
    return this.#iterated && !this.#released
  }

  /** Adds a frame; false means the queue is at the mark and the socket should pause. */
  push(chunk: Uint8Array): boolean {
    // Let go of: nobody will take it (the stream is being destroyed).
    if (this.#released) return true
    const waiter = this.#waiter
    if (waiter !== undefined) {
      this.#waiter = this.#laterWaiters?.shift()
      waiter.resolve({ value: chunk, done: false })
      return true
    }
    this.#chunks.push(chunk)
    this.#queuedCost += chunk.length + QUEUED_FRAME_COST
    return this.#queuedCost < this.#highWaterMark
  }

  /** A clean end: the consumer gets every queued frame, then `done`. */
  end(): void {
    this.#ended = true
    this.#settleWaiters()
  }

  /** A fatal error: thrown once the queued frames are consumed (a clean end already seen wins). */
  fail(error: Error): void {
    if (this.#ended) return
    this.#error ??= error
    this.#settleWaiters()
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#released) return Promise.resolve({ value: undefined, done: true })
    if (this.#head < this.#chunks.length) {
      const chunk = this.#chunks[this.#head] as Uint8Array
      this.#chunks[this.#head++] = EMPTY
      if (this.#head === this.#chunks.length) {
        this.#chunks = []
        this.#head = 0
        if (this.#onDrained !== undefined) this.#drained()
      }
      const wasFull = this.#queuedCost >= this.#highWaterMark
      this.#queuedCost -= chunk.length + QUEUED_FRAME_COST
      if (wasFull && this.#queuedCost < this.#highWaterMark) this.#owner.resumeReading()
      return Promise.resolve({ value: chunk, done: false })
    }
    if (this.#error !== undefined) return Promise.reject(this.#error)
    if (this.#ended) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve, reject) => {
      if (this.#waiter === undefined) this.#waiter = { resolve, reject }
      else (this.#laterWaiters ??= []).push({ resolve, reject })
    })
  }

  return(): Promise<IteratorResult<Uint8Array>> {
    const live = this.#letGo()
    if (live) this.#owner.abandon()
    return Promise.resolve({ value: undefined, done: true })
  }

  throw(error?: unknown): Promise<IteratorResult<Uint8Array>> {
    const live = this.#letGo()
    if (live) this.#owner.abandon(error instanceof Error ? error : new Error(String(error)))
    return Promise.resolve({ value: undefined, done: true })
  }

  /**
   * Runs `callback` once the consumer has taken every frame queued now (at once if none is), so
   * that news racing the frames (a sink's rejection, which it-pipe merges into the same output)
   * cannot overtake them.
   */
  whenDrained(callback: () => void): void {
    ;(this.#onDrained ??= []).push(callback)
    if (this.#queuedCost === 0 || this.#released) this.#drained()
  }

  #drained(): void {
    const callbacks = this.#onDrained
    this.#onDrained = undefined
    for (const callback of callbacks ?? []) callback()
  }

  /** Drops what is queued and answers a pending next() with done; true if the stream was live. */
  #letGo(): boolean {
    const live = !this.#released && !this.#ended && this.#error === undefined
    this.#released = true
    this.#ended = true
    this.#chunks = []
    this.#head = 0
    this.#queuedCost = 0
    for (const waiter of this.#takeWaiters()) waiter.resolve({ value: undefined, done: true })
    this.#drained()
    return live
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

  /** Every waiting next() gets what a call made now would: the error, or `done`. */
  #settleWaiters(): void {
    const error = this.#error
    for (const waiter of this.#takeWaiters()) {
      if (error !== undefined) waiter.reject(error)
      else waiter.resolve({ value: undefined, done: true })
    }
  }

  #takeWaiters(): Waiter[] {
    const first = this.#waiter
    if (first === undefined) return []
    const waiters = [first, ...(this.#laterWaiters ?? [])]
    this.#waiter = undefined
    this.#laterWaiters = undefined
    return waiters
  }
}

interface Waiter {
  resolve: (result: IteratorResult<Uint8Array>) => void
  reject: (error: Error) => void
}

const EMPTY = new Uint8Array(0)

/**
 * Roughly what a received message costs besides its payload (a Uint8Array, its ArrayBuffer,
 * for a WHATWG socket the MessageEvent): about 400 bytes each were measured for 1-byte messages
 * left unread. Counted toward the high water mark and maxReadBuffer.
 */
const QUEUED_FRAME_COST = 256

function noop(): void {}

function settleRun(settle: (error?: Error) => void, error: Error): void {
  settle(error)
}
