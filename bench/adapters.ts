/**
 * Two ready-made `Conn`s: one for anything that is a Node `stream.Duplex` (net, cws,
 * websocket-stream, ws-duplex's Duplex face) and one for it-stream-types duplexes (it-ws,
 * ws-duplex's source/sink face). Each uses the idiom a user of that face would write.
 */
import type { AddressInfo } from 'node:net'
import { Readable, type Duplex, type Writable } from 'node:stream'
import * as lp from 'it-length-prefixed'
import type { Chunks, Conn, OnChunk } from './types.js'

/** The port of a server listening on TCP (`server.address()`); throws for a pipe or none. */
export function tcpPort(address: AddressInfo | string | null): number {
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}

export function isAsyncIterable(chunks: Chunks): chunks is AsyncIterable<Uint8Array> {
  return Symbol.asyncIterator in chunks
}

/**
 * Counts the promises returned by a reader's `onChunk` so that a source paused for one of them is
 * resumed only when none is pending (a few chunks may still arrive after `pause()`).
 */
export function pauser(
  pause: () => void,
  resume: () => void,
  fail: (err: unknown) => void
): (p: Promise<void>) => void {
  let pending = 0
  return (p) => {
    if (pending++ === 0) pause()
    p.then(() => {
      if (--pending === 0) resume()
    }, fail)
  }
}

/** Resolves on 'drain'; rejects if the stream errors or closes first. */
export function drained(w: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      w.off('drain', onDrain)
      w.off('error', onError)
      w.off('close', onClose)
    }
    const onDrain = (): void => {
      cleanup()
      resolve()
    }
    const onError = (err: Error): void => {
      cleanup()
      reject(err)
    }
    const onClose = (): void => {
      cleanup()
      reject(new Error('stream closed while waiting for drain'))
    }
    w.on('drain', onDrain)
    w.on('error', onError)
    w.on('close', onClose)
  })
}

/** write() every chunk, waiting for 'drain' whenever write() returns false, then end(). */
export async function writeAll(w: Writable, chunks: Chunks): Promise<void> {
  if (isAsyncIterable(chunks)) {
    for await (const chunk of chunks) {
      if (!w.write(chunk)) await drained(w)
    }
  } else {
    for (const chunk of chunks) {
      if (!w.write(chunk)) await drained(w)
    }
  }
  w.end()
}

/** Resolves when the readable side ends or the stream closes; rejects on 'error'. */
function ended(d: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    d.once('end', () => resolve())
    d.once('close', () => resolve())
    d.once('error', reject)
  })
}

/** A Node Duplex: write()/'drain' to send, 'data' + pause()/resume() to receive. */
export function duplexConn(d: Duplex): Conn {
  const done = ended(d)
  // Errors surface through `done` and the send/receive promises; never as an unhandled event.
  done.catch(() => undefined)
  return {
    send: (chunks) => writeAll(d, chunks),
    async receive(onChunk: OnChunk) {
      const hold = pauser(
        () => d.pause(),
        () => d.resume(),
        (err) => d.destroy(err instanceof Error ? err : new Error(String(err)))
      )
      d.on('data', (chunk: Uint8Array) => {
        const p = onChunk(chunk)
        if (p !== undefined) hold(p)
      })
      await done
    },
    sendMessages: (messages) => writeAll(d, lp.encode(messages)),
    async receiveMessages(onMessage) {
      // A Readable is an AsyncIterable of its chunks: that is the adapter it-length-prefixed needs.
      // Streams from readable-stream 2 (websocket-stream) predate that: wrap them in a Readable.
      const source: AsyncIterable<Uint8Array> =
        Symbol.asyncIterator in d ? d : new Readable().wrap(d)
      for await (const message of lp.decode(source)) onMessage(message.subarray())
    },
    async echo() {
      d.pipe(d, { end: false })
      await done
    }
  }
}

/** The it-stream-types face: `sink(source)` to send, `for await (… of source)` to receive. */
export interface ItDuplex {
  source: AsyncIterable<Uint8Array>
  sink(source: Chunks): Promise<void>
}

export function itConn(d: ItDuplex): Conn {
  return {
    send: (chunks) => d.sink(chunks),
    async receive(onChunk) {
      for await (const chunk of d.source) {
        const p = onChunk(chunk)
        if (p !== undefined) await p
      }
    },
    sendMessages: (messages) => d.sink(lp.encode(messages)),
    async receiveMessages(onMessage) {
      for await (const message of lp.decode(d.source)) onMessage(message.subarray())
    },
    echo: () => d.sink(d.source)
  }
}
