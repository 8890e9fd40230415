/**
 * Outgoing bytes: written chunks wait here until the end of the current tick, then leave as
 * binary frames of at most `maxFrameSize` bytes. Merging only what is already queued (never
 * waiting on a timer) turns a burst of small writes into one frame without adding latency to
 * a lone write. A full frame has nothing to wait for, so it leaves at once.
 */
import { nextTick } from './next-tick.js'
import type { SendCallback } from './seam.js'

/**
 * How the queue reaches its owner. One object serves every connection (the owner is passed
 * in), so a queue costs no closures of its own.
 */
export interface FrameSink<Owner> {
  sendFrame(owner: Owner, frame: Uint8Array, callback: SendCallback): void
  /** Runs after each frame's bytes were handed to the OS (or failed), in the order sent. */
  frameSent(owner: Owner, error: Error | null | undefined): void
}

export class SendQueue<Owner> {
  readonly #maxFrameSize: number
  readonly #owner: Owner
  readonly #sink: FrameSink<Owner>
  /** Made on the first write after each flush: an idle connection holds no array. */
  #chunks: Uint8Array[] | undefined
  #queuedBytes = 0
  #inFlightBytes = 0
  /** Bytes ever pushed, and ever sent (their frames' callbacks came): positions in the stream. */
  #pushedTotal = 0
  #sentTotal = 0
  /** The size of each frame whose send callback is still due, oldest first. */
  #inFlight: number[] | undefined
  /**
   * One send callback for every frame, made on the first send: Node merges the completion
   * ticks of consecutive writes only when they share a callback.
   */
  #onSent: SendCallback | undefined
  #flushScheduled = false
  #held = false

  constructor(maxFrameSize: number, owner: Owner, sink: FrameSink<Owner>) {
    this.#maxFrameSize = maxFrameSize
    this.#owner = owner
    this.#sink = sink
  }

  /** Bytes accepted and not yet handed to the OS: the write-side memory we answer for. */
  get pendingBytes(): number {
    return this.#queuedBytes + this.#inFlightBytes
  }

  get queuedBytes(): number {
    return this.#queuedBytes
  }

  get inFlightBytes(): number {
    return this.#inFlightBytes
  }

  /** How many bytes were ever pushed: the stream position of the last one. */
  get pushedTotal(): number {
    return this.#pushedTotal
  }

  /** How many bytes were handed to the OS (or failed to be): every byte up to here is done with. */
  get sentTotal(): number {
    return this.#sentTotal
  }

  /** While held (socket still connecting), chunks accumulate and nothing is sent. */
  hold(): void {
    this.#held = true
  }

  release(): void {
    this.#held = false
    this.flush()
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    // A literal holds one element; `[].push()` would reserve 17 for every write of a tick.
    if (this.#chunks === undefined) this.#chunks = [chunk]
    else this.#chunks.push(chunk)
    this.#queuedBytes += chunk.length
    this.#pushedTotal += chunk.length
    if (this.#held) return
    // Waiting for the tick could only merge into a frame that is already full.
    if (this.#queuedBytes >= this.#maxFrameSize) this.#sendFrames(false)
    if (!this.#flushScheduled && this.#chunks !== undefined) {
      this.#flushScheduled = true
      nextTick(flushOnTick, this as SendQueue<unknown>)
    }
  }

  /** Drops what was never sent, returning how many bytes that was. */
  discard(): number {
    const dropped = this.#queuedBytes
    this.#chunks = undefined
    this.#queuedBytes = 0
    return dropped
  }

  /** Frames and sends everything queued now. */
  flush(): void {
    this.#flushScheduled = false
    this.#sendFrames(true)
  }

  /** Sends the queued bytes as frames; unless `all`, a last frame short of full stays queued. */
  #sendFrames(all: boolean): void {
    const chunks = this.#chunks
    if (this.#held || chunks === undefined) return
    this.#chunks = undefined
    const max = this.#maxFrameSize
    // One chunk stands alone; an array is made only when chunks are merged, so a lone write
    // that fits one frame (a round trip's message, a full 64 KiB write) allocates nothing.
    let batch: Uint8Array | Uint8Array[] | undefined
    let batchBytes = 0
    for (let chunk of chunks) {
      while (chunk.length > 0) {
        const room = max - batchBytes
        // Views, not copies: subarray shares the written chunk's memory.
        const piece = chunk.length <= room ? chunk : chunk.subarray(0, room)
        if (batch === undefined) batch = piece
        else if (Array.isArray(batch)) batch.push(piece)
        else batch = [batch, piece]
        batchBytes += piece.length
        if (batchBytes === max) {
          this.#send(frameOf(batch, max), max)
          batch = undefined
          batchBytes = 0
        }
        if (piece === chunk) break
        chunk = chunk.subarray(room)
      }
    }
    if (batch === undefined) return
    if (all) this.#send(frameOf(batch, batchBytes), batchBytes)
    // Ahead of anything pushed while the frames were being sent.
    else {
      const rest = Array.isArray(batch) ? batch : [batch]
      this.#chunks = this.#chunks === undefined ? rest : rest.concat(this.#chunks)
    }
  }

  /** Sends one frame of `bytes` bytes. */
  #send(frame: Uint8Array, bytes: number): void {
    this.#queuedBytes -= bytes
    this.#inFlightBytes += bytes
    ;(this.#inFlight ??= []).push(bytes)
    this.#onSent ??= (error) => this.#sent(error)
    this.#sink.sendFrame(this.#owner, frame, this.#onSent)
  }

  /** Send callbacks come in the order of the sends, one per frame. */
  #sent(error: Error | null | undefined): void {
    const bytes = this.#inFlight?.shift() ?? 0
    this.#inFlightBytes -= bytes
    this.#sentTotal += bytes
    this.#sink.frameSent(this.#owner, error)
  }
}

function flushOnTick(queue: SendQueue<unknown>): void {
  queue.flush()
}

/** A lone chunk goes out as it is; only a merge of several costs a copy. */
function frameOf(batch: Uint8Array | readonly Uint8Array[], bytes: number): Uint8Array {
  return Array.isArray(batch) ? concat(batch, bytes) : (batch as Uint8Array)
}

function concat(chunks: readonly Uint8Array[], bytes: number): Uint8Array {
  const frame = new Uint8Array(bytes)
  let offset = 0
  for (const chunk of chunks) {
    frame.set(chunk, offset)
    offset += chunk.length
  }
  return frame
}
