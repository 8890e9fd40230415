/**
 * The it-stream-types face: `sink(source)` drains an (async) iterable of Uint8Array or
 * Uint8ArrayList into the same write path the Duplex face uses, so both share one backpressure.
 */
import type { Source } from 'it-stream-types'
import type { Uint8ArrayList } from 'uint8arraylist'

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

/** Copies `source` into `writer`, awaiting backpressure; rejects with the stream's error. */
export async function drainSource(writer: ChunkWriter, source: Source<SinkChunk>): Promise<void> {
  try {
    for await (const chunk of source) {
      if (chunk instanceof Uint8Array) {
        if (!writer.write(chunk)) await writer.drained()
        continue
      }
      // A Uint8ArrayList iterates its own views: its bytes are written without a copy.
      for (const part of chunk) {
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
