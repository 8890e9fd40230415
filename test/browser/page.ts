// Bundled by test/browser.spec.ts with esbuild for Chromium. It imports ws-duplex by its package
// name (ws-duplex/browser, the built dist/browser.js), as a user's bundler would.
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import { connect, WsDuplexError, type ConnectOptions, type WsStream } from 'ws-duplex/browser'

export interface Ending {
  bytes: number
  error: { code: string; closeCode: number | undefined } | null
  closeInfo: { code: number; reason: string; wasClean: boolean } | undefined
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff
  return bytes
}

async function sha256(chunks: Uint8Array[]): Promise<string> {
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  const joined = new Uint8Array(total)
  let offset = 0
  for (const chunk of chunks) {
    joined.set(chunk, offset)
    offset += chunk.length
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', joined))
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')
}

function errorOf(error: unknown): Ending['error'] {
  if (error instanceof WsDuplexError) return { code: error.code, closeCode: error.closeCode }
  return { code: String(error), closeCode: undefined }
}

async function readToEnd(stream: WsStream): Promise<Ending> {
  let bytes = 0
  try {
    for await (const chunk of stream.source) bytes += chunk.length
  } catch (error) {
    return { bytes, error: errorOf(error), closeInfo: await stream.close().catch(() => undefined) }
  }
  return { bytes, error: null, closeInfo: stream.closeInfo }
}

export const api = {
  /** Sends `total` bytes in chunks of `sizes` (cycled) to an echo server; hashes both ways. */
  async echo(url: string, total: number, sizes: number[]) {
    const stream = await connect(url)
    const data = pattern(total, 3)
    const received: Uint8Array[] = []
    let receivedBytes = 0
    let echoed = (): void => {}
    const allEchoed = new Promise<void>((resolve) => (echoed = resolve))
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let offset = 0, i = 0; offset < total; i++) {
        const size = sizes[i % sizes.length] ?? 1
        yield data.subarray(offset, offset + size)
        offset += size
      }
      // No half-close in WebSocket: close only once everything came back.
      await allEchoed
    }
    await Promise.all([
      stream.sink(chunks()),
      (async () => {
        for await (const chunk of stream.source) {
          received.push(chunk.slice())
          receivedBytes += chunk.length
          if (receivedBytes === total) echoed()
        }
      })()
    ])
    return {
      sent: await sha256([data]),
      received: await sha256(received),
      closeInfo: stream.closeInfo
    }
  },

  /** `count` length-prefixed messages through it-pipe and it-length-prefixed, echoed. */
  async lengthPrefixed(url: string, count: number) {
    const stream = await connect(url)
    const messages = Array.from({ length: count }, (_, i) => pattern(i % 700, i))
    const echoed: Uint8Array[] = []
    let done = (): void => {}
    const allEchoed = new Promise<void>((resolve) => (done = resolve))
    async function* outgoing(): AsyncGenerator<Uint8Array> {
      yield* messages
      await allEchoed
    }
    await pipe(
      outgoing(),
      (source) => lp.encode(source),
      stream,
      (source) => lp.decode(source),
      async (source) => {
        for await (const message of source) {
          echoed.push(message.subarray())
          if (echoed.length === count) done()
        }
      }
    )
    return {
      sent: await sha256(messages),
      received: await sha256(echoed),
      closeInfo: stream.closeInfo
    }
  },

  /** Connects and reads until the stream ends, reporting how. */
  async readToEnd(url: string, options: ConnectOptions = {}): Promise<Ending> {
    return readToEnd(await connect(url, options))
  },

  /** Connects, then destroys the stream with an error (the peer should see 4011). */
  async destroyWithError(url: string) {
    const stream = await connect(url)
    const closed = new Promise((resolve) => stream.events.once('close', resolve))
    stream.destroy(new Error('gave up'))
    return closed
  },

  /** Connects and reports what the platform cannot do. */
  async unsupported(url: string) {
    const stream = await connect(url, { keepAlive: true })
    const warning = await new Promise<string>((resolve) =>
      stream.events.once('warning', (error) => resolve(error.code))
    )
    const ping = await stream.ping().then(
      () => 'resolved',
      (error: WsDuplexError) => error.code
    )
    await stream.close()
    return { warning, ping }
  },

  /** A connect that cannot succeed. */
  async refused(url: string) {
    return connect(url).then(
      () => null,
      (error: unknown) => errorOf(error)
    )
  }
}

export type Api = typeof api

Object.assign(globalThis, { wsdTest: api })
