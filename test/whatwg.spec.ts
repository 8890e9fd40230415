// The WHATWG face (WsStream) in Node, over undici's WebSocket client, against real ws-duplex and
// ws servers on 127.0.0.1. test/browser.spec.ts runs the same face in headless Chromium.
import type { AddressInfo } from 'node:net'
import { createHash } from 'node:crypto'
import { expect } from 'chai'
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import { WebSocket as UndiciWebSocket } from 'undici'
import { WebSocket } from 'ws'
import {
  createServer,
  fromWebSocket,
  WsDuplex,
  WsDuplexError,
  WsStream,
  type WhatwgWebSocket,
  type WsDuplexServer
} from '../lib/index.js'
import { connect as whatwgConnect } from '../lib/browser.js'
import { Opcode, startRawServer } from './helpers/raw-peer.js'
import { Cleanup, patternBytes, startWsServer } from './helpers/servers.js'
import { collect, onceWithin, until, withTimeout } from './helpers/wait.js'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

function undiciSocket(url: string): WhatwgWebSocket {
  return new UndiciWebSocket(url) as unknown as WhatwgWebSocket
}

async function duplexServer(
  onConnection: (duplex: WsDuplex) => void
): Promise<{ url: string; server: WsDuplexServer }> {
  const server = await createServer({ port: 0, host: '127.0.0.1' }, onConnection)
  cleanup.add(() => server.close())
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** A server that reports each connection's bytes (or error) and how it closed. */
async function recordingServer(): Promise<{
  url: string
  next: () => Promise<{ bytes: Buffer; code: number; error: string | undefined }>
}> {
  type Result = { bytes: Buffer; code: number; error: string | undefined }
  const results: Promise<Result>[] = []
  const waiters: ((result: Promise<Result>) => void)[] = []
  const { url } = await duplexServer((duplex) => {
    const result = (async () => {
      let bytes: Buffer = Buffer.alloc(0)
      let error: string | undefined
      try {
        bytes = await collect(duplex, 10_000)
      } catch (e) {
        error = (e as WsDuplexError).code
      }
      const info = duplex.closeInfo ?? (await onceWithin(duplex.events, 'close'))[0]
      return { bytes, code: (info as { code: number }).code, error }
    })()
    const waiter = waiters.shift()
    if (waiter) waiter(result)
    else results.push(result)
  })
  return {
    url,
    next: () =>
      withTimeout(
        new Promise<Promise<Result>>((resolve) => {
          const ready = results.shift()
          if (ready) resolve(ready)
          else waiters.push(resolve)
        }).then((result) => result),
        10_000,
        'the server side'
      )
  }
}

async function* chunked(bytes: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let offset = 0
  for (let i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1
    yield bytes.subarray(offset, offset + size)
    offset += size
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => {}
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

/** Yields `source`, then waits for `done` before ending (and so before the close). */
async function* then<T>(
  source: Iterable<T> | AsyncIterable<T>,
  done: Promise<void>
): AsyncGenerator<T> {
  yield* source
  await withTimeout(done, 10_000, 'the echo')
}

/** Reads to the end; returns every byte (as numbers) and the error the source ended with. */
async function readUntilEnd(
  source: AsyncIterable<Uint8Array>
): Promise<{ chunks: number[]; error: WsDuplexError | undefined }> {
  const chunks: number[] = []
  try {
    for await (const chunk of source) for (const byte of chunk) chunks.push(byte)
  } catch (e) {
    return { chunks, error: e as WsDuplexError }
  }
  return { chunks, error: undefined }
}

/** A server connection nobody uses: its ending (often abrupt, in these tests) is not news. */
function ignoreErrors(duplex: WsDuplex): void {
  duplex.on('error', () => {})
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

describe('WsStream over a WHATWG WebSocket (undici, in Node)', function () {
  this.timeout(20_000)

  describe('fromWebSocket()', () => {
    it('gives a WsStream for a WHATWG socket and a WsDuplex for a ws socket', async () => {
      const { url } = await duplexServer(ignoreErrors)
      const whatwg = fromWebSocket(undiciSocket(url))
      cleanup.add(() => whatwg.destroy())
      expect(whatwg).to.be.instanceOf(WsStream)
      const { WebSocket } = await import('ws')
      const ws = fromWebSocket(new WebSocket(url))
      cleanup.add(() => void ws.destroy())
      expect(ws).to.be.instanceOf(WsDuplex)
    })

    it('refuses anything else with a TypeError', () => {
      expect(() => fromWebSocket({} as WhatwgWebSocket)).to.throw(TypeError, /socket/)
    })

    it('refuses a closed socket with ERR_STREAM_CLOSED', async () => {
      const socket = new UndiciWebSocket('ws://127.0.0.1:1')
      await withTimeout(
        new Promise((resolve) => socket.addEventListener('close', resolve, { once: true })),
        5000,
        'the refused socket to close'
      )
      expect(() => new WsStream(socket as unknown as WhatwgWebSocket))
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_STREAM_CLOSED')
    })
  })

  describe('bytes', () => {
    it('carries bytes both ways in odd chunkings, then closes cleanly with 1000', async () => {
      const data = patternBytes(300_001, 7)
      const { url } = await duplexServer((duplex) => duplex.pipe(duplex))
      const stream = fromWebSocket(undiciSocket(url))
      // No half-close in WebSocket: the sink ends (and closes) only once the echo is complete.
      const echoed = deferred()
      const received: Uint8Array[] = []
      let receivedBytes = 0
      await Promise.all([
        stream.sink(then(chunked(data, [1, 7, 4096, 65_537, 3]), echoed.promise)),
        (async () => {
          for await (const chunk of stream.source) {
            received.push(chunk.slice())
            receivedBytes += chunk.length
            if (receivedBytes === data.length) echoed.resolve()
          }
        })()
      ])
      expect(sha256(Buffer.concat(received))).to.equal(sha256(data))
      expect(stream.closeInfo).to.deep.equal({ code: 1000, reason: '', wasClean: true })
    })

    it('works with connect() from ws-duplex/browser and it-length-prefixed', async () => {
      const { url } = await duplexServer((duplex) => void pipe(duplex.source, duplex.sink))
      const stream = await whatwgConnect(url, { WebSocket: UndiciWebSocket as never })
      const messages = Array.from({ length: 500 }, (_, i) => patternBytes(i * 3, i))
      const allEchoed = deferred()
      const echoed: Uint8Array[] = []
      await pipe(
        then(messages, allEchoed.promise),
        (source) => lp.encode(source),
        stream,
        (source) => lp.decode(source),
        async (source) => {
          for await (const message of source) {
            echoed.push(message.subarray())
            if (echoed.length === messages.length) allEchoed.resolve()
          }
        }
      )
      expect(echoed.map(sha256)).to.deep.equal(messages.map(sha256))
      expect(stream.closeInfo?.wasClean).to.equal(true)
    })

    it('holds the writer back when the peer stops reading (bounded, no busy polling)', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url))
      const peer = await server.nextSocket()
      peer.pause()
      let produced = 0
      const total = 256 * 1024 * 1024
      async function* producer(): AsyncGenerator<Uint8Array> {
        const chunk = new Uint8Array(64 * 1024)
        while (produced < total) {
          produced += chunk.length
          yield chunk
        }
      }
      const sinking = stream.sink(producer())
      sinking.catch(() => {})
      // A stall is an absence of progress, so only time can show it: sample until two samples
      // 200 ms apart agree (bounded), then check how far the writer got.
      let last = -1
      await withTimeout(
        (async () => {
          while (produced !== last) {
            last = produced
            await new Promise((resolve) => setTimeout(resolve, 200))
          }
        })(),
        10_000,
        'the writer to stall'
      )
      expect(produced).to.be.below(64 * 1024 * 1024)
      stream.destroy()
    })
  })

  describe('endings', () => {
    it('end of the sink sends 1000 and the peer ends cleanly', async () => {
      const server = await recordingServer()
      const stream = fromWebSocket(undiciSocket(server.url))
      void collect(stream.source).catch(() => {})
      await stream.sink([new Uint8Array([1, 2, 3])])
      const result = await server.next()
      expect(result).to.deep.equal({ bytes: Buffer.from([1, 2, 3]), code: 1000, error: undefined })
    })

    it('close(1001) goes out as 1000: going away is a clean end for the peer too', async () => {
      const server = await recordingServer()
      const stream = await whatwgConnect(server.url, { WebSocket: UndiciWebSocket as never })
      const info = await withTimeout(stream.close(1001, 'page going away'), 5000, 'close()')
      expect(info).to.include({ code: 1000, reason: 'page going away', wasClean: true })
      expect(await server.next()).to.include({ code: 1000, error: undefined })
    })

    it('destroy(error) sends 4011 (1011 is not allowed to scripts) and the peer errors', async () => {
      const server = await recordingServer()
      const stream = fromWebSocket(undiciSocket(server.url))
      await onceWithin(stream.events as never, 'open', 5000)
      stream.destroy(new Error('boom'))
      const result = await server.next()
      expect(result.code).to.equal(4011)
      expect(result.error).to.equal('ERR_PEER_CLOSED_WITH_ERROR')
    })

    it('a sink chunk that is not bytes rejects with ERR_INVALID_ARG_TYPE; the peer gets 4011', async () => {
      const server = await recordingServer()
      const stream = fromWebSocket(undiciSocket(server.url))
      await onceWithin(stream.events as never, 'open', 5000)
      const chunks = [new Uint8Array([1]), 'text'] as unknown as Uint8Array[]
      const error = await stream.sink(chunks).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.be.instanceOf(TypeError)
      expect((error as { code?: string }).code).to.equal('ERR_INVALID_ARG_TYPE')
      const result = await server.next()
      expect(result.code).to.equal(4011)
      expect(result.error).to.equal('ERR_PEER_CLOSED_WITH_ERROR')
    })

    it('a sink whose source fails with an AbortError still gives the peer 4011', async () => {
      const server = await recordingServer()
      const stream = fromWebSocket(undiciSocket(server.url))
      await onceWithin(stream.events as never, 'open', 5000)
      const failure = new DOMException('aborted', 'AbortError')
      async function* source(): AsyncGenerator<Uint8Array> {
        yield new Uint8Array([1])
        throw failure
      }
      const error = await stream.sink(source()).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.equal(failure)
      const result = await server.next()
      expect(result.code).to.equal(4011)
      expect(result.error).to.equal('ERR_PEER_CLOSED_WITH_ERROR')
    })

    it('a sink waiting on its source settles when the peer closes with 1011, without waiting for it', async () => {
      const { url } = await duplexServer((duplex) => {
        duplex.once('data', () => void duplex.close(1011, 'broken'))
      })
      const stream = fromWebSocket(undiciSocket(url))
      void collect(stream.source).catch(() => {})
      let stopped = false
      async function* source(): AsyncGenerator<Uint8Array> {
        try {
          yield new Uint8Array([1])
          await new Promise(() => {})
        } finally {
          stopped = true
        }
      }
      const error = await withTimeout(
        stream.sink(source()).then(
          () => undefined,
          (e: unknown) => e
        ),
        5000,
        'sink()'
      )
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
      // The generator is suspended in an await: its finally runs only if it ever resumes, so
      // what can be checked is that the sink did not wait for it.
      expect(stopped).to.equal(false)
    })

    it("a sink chunk while the peer's 1011 close is under way fails with that 1011, not a bare 'closed'", async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const socket = undiciSocket(raw.url)
      const stream = fromWebSocket(socket)
      void collect(stream.source).catch(() => {})
      const peer = await raw.nextPeer()
      peer.sendClose(1011, 'peer broke')
      // The socket answered our peer's close: it is CLOSING until TCP ends.
      const answered = peer.nextFrame(3000)
      let stateAtChunk: number | undefined
      async function* source(): AsyncGenerator<Uint8Array> {
        expect((await answered).opcode).to.equal(Opcode.Close)
        stateAtChunk = socket.readyState
        // The FIN needs a network read to arrive; the chunk is taken before, in this turn.
        peer.end()
        yield new Uint8Array([1, 2, 3])
      }
      const error = await withTimeout(
        stream.sink(source()).then(
          () => undefined,
          (e: unknown) => e as WsDuplexError
        ),
        5000,
        'sink()'
      )
      expect(stateAtChunk).to.equal(2)
      expect(error).to.be.instanceOf(WsDuplexError)
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
    })

    it('a peer that closes with 1011 is an error, not an EOF, after the bytes before it', async () => {
      const { url } = await duplexServer((duplex) => {
        duplex.write(new Uint8Array([9, 9]))
        void duplex.close(1011, 'broken')
      })
      const stream = fromWebSocket(undiciSocket(url))
      const { chunks, error } = await readUntilEnd(stream.source)
      expect(chunks).to.deep.equal([9, 9])
      expect(error).to.be.instanceOf(WsDuplexError)
      expect(error?.code).to.equal('ERR_PEER_CLOSED_WITH_ERROR')
      expect(error?.closeCode).to.equal(1011)
    })

    it("a peer's close then a reset: 'closing' says the peer started it, and the stream errors", async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      // ws's own WebSocket has the WHATWG API too, and reports this ending as not clean.
      const stream = new WsStream(new WebSocket(raw.url) as unknown as WhatwgWebSocket)
      const closing: unknown[] = []
      stream.events.on('closing', (info) => closing.push(info))
      const peer = await raw.nextPeer()
      peer.sendClose(1011, 'peer broke')
      // It does not wait for our answer: it drops TCP at once.
      peer.reset()
      const { error } = await readUntilEnd(stream.source)
      expect(error?.closeCode).to.equal(1011)
      expect(closing).to.deep.equal([{ code: 1011, reason: 'peer broke', initiator: 'remote' }])
    })

    it("'closing' reports the code that went on the wire: destroy(error) is 4011, not 1011", async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url))
      const peer = await server.nextSocket()
      const closing = onceWithin<[{ code: number; initiator: string }]>(
        stream.events as never,
        'closing'
      )
      const peerGot = onceWithin<[number]>(peer, 'close', 5000)
      await until(() => stream.socket.readyState === 1, 'the socket to open')
      stream.destroy(new Error('broke'))
      expect((await closing)[0]).to.include({ code: 4011, initiator: 'local' })
      expect((await peerGot)[0]).to.equal(4011)
    })

    it('a peer that drops the TCP connection is ERR_ABNORMAL_CLOSURE', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url))
      const peer = await server.nextSocket()
      peer.terminate()
      const error = await collect(stream.source).then(
        () => undefined,
        (e: WsDuplexError) => e
      )
      expect(error?.code).to.equal('ERR_ABNORMAL_CLOSURE')
      expect(stream.closeInfo?.wasClean).to.equal(false)
    })

    it('a text frame is ERR_TEXT_FRAME: bytes before it delivered, 4003 on the wire', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url))
      const peer = await server.nextSocket()
      const closed = onceWithin<[number]>(peer, 'close', 5000)
      peer.send(Buffer.from([1, 2]))
      peer.send('hello')
      const warnings: string[] = []
      stream.events.on('warning', (e) => warnings.push(e.code))
      const { chunks, error } = await readUntilEnd(stream.source)
      expect(chunks).to.deep.equal([1, 2])
      expect(error?.code).to.equal('ERR_TEXT_FRAME')
      expect(error?.closeCode).to.equal(4003)
      expect(warnings).to.include('ERR_TEXT_FRAME')
      expect((await closed)[0]).to.equal(4003)
    })

    it("text: 'bytes' delivers a text frame's UTF-8 bytes", async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url), { text: 'bytes' })
      const peer = await server.nextSocket()
      peer.send('hé')
      peer.close(1000)
      expect(Buffer.from(await collect(stream.source)).toString()).to.equal('hé')
    })

    it('a reader that falls maxReadBuffer behind fails with ERR_READ_OVERFLOW (4008)', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url), { maxReadBuffer: 100_000 })
      const peer = await server.nextSocket()
      const closed = onceWithin<[number]>(peer, 'close', 5000)
      for (let i = 0; i < 10; i++) peer.send(Buffer.alloc(20_000, i))
      const [code] = await closed
      expect(code).to.equal(4008)
      // Everything accepted before the overflow is still there for the reader, then the error.
      const { chunks, error } = await readUntilEnd(stream.source)
      expect(chunks.length).to.be.at.least(100_000)
      expect(error?.code).to.equal('ERR_READ_OVERFLOW')
    })

    it('counts what each unread message holds, not only its bytes: a flood of 1-byte messages overflows too', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url), { maxReadBuffer: 100_000 })
      const peer = await server.nextSocket()
      const closed = onceWithin<[number]>(peer, 'close', 5000)
      // 20,000 bytes in all, a fifth of maxReadBuffer, but 20,000 messages left unread.
      const one = Buffer.alloc(1)
      for (let i = 0; i < 20_000; i++) peer.send(one)
      const [code] = await closed
      expect(code).to.equal(4008)
      const { chunks, error } = await readUntilEnd(stream.source)
      expect(error?.code).to.equal('ERR_READ_OVERFLOW')
      // Overflowed after a few hundred messages (100,000 / (1 + 256)), not after all of them.
      expect(chunks.length).to.be.below(1000)
    })

    it('a message over maxPayload fails with ERR_PAYLOAD_TOO_LARGE (4009)', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url), { maxPayload: 1000 })
      const peer = await server.nextSocket()
      const closed = onceWithin<[number]>(peer, 'close', 5000)
      peer.send(Buffer.alloc(1001))
      const error = await collect(stream.source).then(
        () => undefined,
        (e: WsDuplexError) => e
      )
      expect(error?.code).to.equal('ERR_PAYLOAD_TOO_LARGE')
      expect((await closed)[0]).to.equal(4009)
    })

    it('a message over maxPayload from a peer that then stops reading ends at closeTimeout', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url), {
        maxPayload: 1000,
        closeTimeout: 200
      })
      const peer = await server.nextSocket()
      // It never reads our close frame, so never answers it.
      peer.send(Buffer.alloc(2000), () => peer.pause())
      const error = await withTimeout(
        collect(stream.source).then(
          () => undefined,
          (e: WsDuplexError) => e
        ),
        3000,
        'the stream to end'
      )
      expect(error).to.include({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 4009 })
    })

    it('a peer that never answers our close is cut off at closeTimeout', async () => {
      const server = await startWsServer(cleanup)
      const stream = fromWebSocket(undiciSocket(server.url), { closeTimeout: 300 })
      const peer = await server.nextSocket()
      // Stop reading, so ws never sees (or answers) our close frame.
      peer.pause()
      const started = performance.now()
      const info = await withTimeout(stream.close(), 5000, 'close()')
      expect(info.wasClean).to.equal(false)
      expect(performance.now() - started).to.be.below(3000)
      const error = await collect(stream.source).then(
        () => undefined,
        (e: WsDuplexError) => e
      )
      expect(error?.code).to.equal('ERR_CLOSE_TIMEOUT')
    })
  })

  describe('what the API cannot do', () => {
    it('ping() rejects with ERR_UNSUPPORTED', async () => {
      const { url } = await duplexServer(ignoreErrors)
      const stream = fromWebSocket(undiciSocket(url))
      cleanup.add(() => stream.destroy())
      const error = await stream.ping().catch((e: WsDuplexError) => e)
      expect(error).to.have.property('code', 'ERR_UNSUPPORTED')
    })

    it('keepAlive is reported as unsupported on events, not thrown', async () => {
      const { url } = await duplexServer(ignoreErrors)
      const stream = fromWebSocket(undiciSocket(url), { keepAlive: true })
      cleanup.add(() => stream.destroy())
      const [warning] = await onceWithin<[WsDuplexError]>(stream.events as never, 'warning')
      expect(warning.code).to.equal('ERR_UNSUPPORTED')
    })

    it("keepAlive's warning does not come after 'close'", async () => {
      const { url } = await duplexServer(ignoreErrors)
      const stream = fromWebSocket(undiciSocket(url), { keepAlive: true })
      const seen: string[] = []
      stream.events.on('warning', () => seen.push('warning'))
      stream.events.on('close', () => seen.push('close'))
      // Over in the same turn as the open: the warning, due on a timer set at the open, would
      // come after.
      stream.events.once('open', () => stream.destroy())
      await onceWithin(stream.events as never, 'close')
      // A timer set now fires after the one set at the open (timers keep their order).
      await new Promise((resolve) => setTimeout(resolve, 0))
      expect(seen).to.deep.equal(['close'])
    })
  })

  describe('connect() from ws-duplex/browser', () => {
    it('rejects a refused connection with ERR_CONNECT_FAILED', async () => {
      const { url, server } = await duplexServer(ignoreErrors)
      await server.close()
      const error = await whatwgConnect(url, { WebSocket: UndiciWebSocket as never }).catch(
        (e: WsDuplexError) => e
      )
      expect(error).to.have.property('code', 'ERR_CONNECT_FAILED')
    })

    it('rejects an aborted attempt with ERR_ABORTED', async () => {
      const { url } = await duplexServer(ignoreErrors)
      const controller = new AbortController()
      const pending = whatwgConnect(url, {
        WebSocket: UndiciWebSocket as never,
        signal: controller.signal
      })
      controller.abort()
      const error = await pending.catch((e: WsDuplexError) => e)
      expect(error).to.have.property('code', 'ERR_ABORTED')
    })

    it('validates its options with TypeError and RangeError naming them', async () => {
      await whatwgConnect('http//nope').then(
        () => expect.fail('should reject'),
        (e: Error) => expect(e).to.be.instanceOf(TypeError).with.property('message').match(/url/)
      )
      await whatwgConnect('ws://127.0.0.1:1', { timeout: 0 }).then(
        () => expect.fail('should reject'),
        (e: Error) =>
          expect(e)
            .to.be.instanceOf(RangeError)
            .with.property('message')
            .match(/timeout/)
      )
      await whatwgConnect('ws://127.0.0.1:1', {
        WebSocket: UndiciWebSocket as never,
        maxReadBuffer: -1
      }).then(
        () => expect.fail('should reject'),
        (e: Error) =>
          expect(e)
            .to.be.instanceOf(RangeError)
            .with.property('message')
            .match(/maxReadBuffer/)
      )
    })

    it('refuses unknown options, bad protocols and fragments with a TypeError naming them', async () => {
      const mistakes: [string, Record<string, unknown>, RegExp][] = [
        ['ws://127.0.0.1:1/', { headers: { a: 'b' } }, /`headers`.*cannot send request headers/],
        ['ws://127.0.0.1:1/', { timeuot: 5 }, /Unknown option `timeuot` for connect\(\)/],
        ['ws://127.0.0.1:1/', { protocols: 'a b' }, /`protocols`/],
        ['ws://127.0.0.1:1/', { protocols: ['a', 'a'] }, /`protocols`/],
        ['ws://127.0.0.1:1/#x', {}, /`url`.*fragment/],
        ['ws://127.0.0.1:1/#', {}, /`url`.*fragment/]
      ]
      for (const [url, options, message] of mistakes) {
        const error = await whatwgConnect(url, { WebSocket: UndiciWebSocket as never, ...options })
          .then(() => undefined)
          .catch((e: unknown) => e)
        expect(error, JSON.stringify([url, options])).to.be.instanceOf(TypeError)
        expect((error as Error).message).to.match(message)
      }
    })

    it('a call refused for its options opens no connection', async () => {
      const server = await startWsServer(cleanup)
      const paths: (string | undefined)[] = []
      server.wss.on('connection', (_ws, request) => paths.push(request.url))
      const WebSocket = UndiciWebSocket as never
      for (const bad of [
        { maxFrameSize: 0 },
        { text: 'nope' },
        { maxPayload: 0 },
        { keepAlive: 5 }
      ]) {
        const error = await whatwgConnect(`${server.url}/bad`, { WebSocket, ...(bad as object) })
          .then(() => undefined)
          .catch((e: unknown) => e)
        expect(error, JSON.stringify(bad)).to.be.instanceOf(Error)
      }
      // Connections are accepted in the order they were made: any refused one would come first.
      const good = await whatwgConnect(`${server.url}/good`, { WebSocket })
      cleanup.add(() => good.destroy())
      await server.nextSocket()
      expect(paths).to.deep.equal(['/good'])
    })
  })
})
