import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { finished, pipeline } from 'node:stream/promises'
import { Readable, Writable } from 'node:stream'
import { expect } from 'chai'
import fc from 'fast-check'
import { WebSocket } from 'ws'
import {
  WsDuplex,
  WsDuplexError,
  connect,
  createServer,
  type CloseInfo,
  type WsDuplexOptions
} from '../lib/index.js'
import {
  Opcode,
  acceptKey,
  encodeFrame,
  headerValue,
  startRawServer,
  type RawPeer
} from './helpers/raw-peer.js'
import {
  Cleanup,
  openDuplex,
  openRawPair,
  patternBytes,
  startWsServer,
  streamError
} from './helpers/servers.js'
import { collect, onceWithin, until, whenStalled, withTimeout } from './helpers/wait.js'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

/** A WsDuplex client connected to a raw peer that plays the server byte by byte. */
const rawPair = (options?: WsDuplexOptions): ReturnType<typeof openRawPair> =>
  openRawPair(cleanup, options)

/** A duplex to a raw peer that keeps TCP open after our FIN, as a server slow to close would. */
async function halfOpenPair(
  options?: WsDuplexOptions
): Promise<{ duplex: WsDuplex; peer: RawPeer }> {
  const raw = await startRawServer({ allowHalfOpen: true })
  cleanup.add(() => raw.close())
  const duplex = await openDuplex(cleanup, raw.url, options)
  return { duplex, peer: await raw.nextPeer() }
}

/** The peer's 1011 has been read and answered (ws echoes it); TCP stays open until `peer.end()`. */
async function peerClosedWith1011(): Promise<{ duplex: WsDuplex; peer: RawPeer }> {
  const { duplex, peer } = await halfOpenPair()
  duplex.resume()
  peer.sendClose(1011, 'server broke')
  expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
  return { duplex, peer }
}

/** What `duplex.write(chunk)` calls back with (null or undefined for success). */
function writeOutcome(duplex: WsDuplex, chunk: Uint8Array): Promise<Error | null | undefined> {
  return new Promise((resolve) => duplex.write(chunk, resolve))
}

function closeEvent(duplex: WsDuplex, ms = 3000): Promise<[CloseInfo]> {
  return onceWithin<[CloseInfo]>(duplex.events, 'close', ms)
}

describe('WsDuplex', () => {
  describe('constructor', () => {
    it('throws a TypeError for something that is not a ws WebSocket', () => {
      expect(() => new WsDuplex({} as WebSocket)).to.throw(TypeError, /socket/)
    })

    it('throws ERR_STREAM_CLOSED for a socket that is already closed', async () => {
      const { url } = await startWsServer(cleanup)
      const ws = new WebSocket(url)
      await onceWithin(ws, 'open')
      ws.terminate()
      await onceWithin(ws, 'close')
      expect(() => new WsDuplex(ws))
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_STREAM_CLOSED')
    })

    it('rejects a bad option with an error naming it, before touching the socket', async () => {
      const { url } = await startWsServer(cleanup)
      const ws = new WebSocket(url)
      cleanup.add(() => ws.terminate())
      expect(() => new WsDuplex(ws, { maxFrameSize: 0 })).to.throw(RangeError, /maxFrameSize/)
      expect(() => new WsDuplex(ws, { text: 'nope' as 'error' })).to.throw(TypeError, /text/)
      expect(ws.listenerCount('message')).to.equal(0)
    })
  })

  describe('bytes', () => {
    it('carries bytes both ways between a client and a server', async () => {
      const { url, nextSocket } = await startWsServer(cleanup)
      const client = await openDuplex(cleanup, url)
      const server = new WsDuplex(await nextSocket())
      const toServer = patternBytes(300_000, 1)
      const toClient = patternBytes(200_000, 2)
      const serverGot = collectUntil(server, toServer.length)
      const clientGot = collectUntil(client, toClient.length)
      client.write(toServer)
      server.write(toClient)
      expect((await serverGot).equals(toServer)).to.equal(true)
      expect((await clientGot).equals(toClient)).to.equal(true)
      server.destroy()
    })

    it('yields Uint8Array chunks', async () => {
      const { duplex, peer } = await rawPair()
      peer.sendBinary(Buffer.from('abc'))
      const [chunk] = await onceWithin<[unknown]>(duplex, 'data')
      expect(chunk).to.be.instanceOf(Uint8Array)
    })
  })

  describe('async iteration', () => {
    it('honours setEncoding(): strings, a character split across frames decoded whole', async () => {
      const { duplex, peer } = await rawPair()
      duplex.setEncoding('utf8')
      const euro = Buffer.from('€')
      peer.sendBinary(euro.subarray(0, 1))
      peer.sendBinary(euro.subarray(1))
      peer.sendClose(1000)
      let text = ''
      for await (const chunk of duplex) {
        expect(chunk).to.be.a('string')
        text += chunk as unknown as string
      }
      expect(text).to.equal('€')
    })

    it('yields each frame as it came, even when several wait for a busy reader', async () => {
      const { duplex, peer } = await rawPair()
      const iterator = duplex[Symbol.asyncIterator]()
      peer.sendBinary(Buffer.from('a'))
      const chunks = [
        Buffer.from((await withTimeout(iterator.next(), 2000, 'a')).value ?? '').toString()
      ]
      // The reader is busy: the next frames queue up. The ping follows them on the wire, so
      // once it is seen all of them are queued.
      const pinged = onceWithin(duplex.events, 'ping')
      for (const text of ['bb', 'ccc']) peer.sendBinary(Buffer.from(text))
      peer.sendPing()
      await pinged
      peer.sendClose(1000)
      for await (const chunk of iterator) chunks.push(Buffer.from(chunk).toString())
      // Node's Readable iterator would have handed out one concatenated 'bbccc'.
      expect(chunks).to.deep.equal(['a', 'bb', 'ccc'])
      expect(duplex.closeInfo).to.include({ code: 1000, wasClean: true })
    })

    it('yields Buffers from an iterator that is an iterable of itself, once', async () => {
      const { duplex, peer } = await rawPair()
      const iterator = duplex[Symbol.asyncIterator]()
      expect(iterator[Symbol.asyncIterator]()).to.equal(iterator)
      peer.sendBinary(Buffer.from('x'))
      const first = await withTimeout(iterator.next(), 2000, 'a frame')
      expect(Buffer.isBuffer(first.value)).to.equal(true)
      expect(() => duplex[Symbol.asyncIterator]())
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_FACE_CONFLICT')
      await iterator.return?.()
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
    })

    it('is disposable (`await using`) on either face, which stops it like a loop that breaks', async () => {
      for (const face of ['source', 'stream'] as const) {
        const { duplex, peer } = await rawPair()
        if (face === 'stream') duplex.on('data', () => {}).pause()
        const iterator = duplex[Symbol.asyncIterator]()
        expect(iterator[Symbol.asyncDispose], face).to.be.a('function')
        peer.sendBinary(Buffer.from('x'))
        await withTimeout(iterator.next(), 2000, 'a frame')
        await iterator[Symbol.asyncDispose]()
        expect((await peer.readUntilClose()).close?.code, face).to.equal(1000)
      }
    })

    it('ends at once, with the stream’s error, over a stream already destroyed', async () => {
      const { duplex, peer } = await rawPair()
      const failed = onceWithin<[Error]>(duplex, 'error')
      duplex.destroy(new WsDuplexError('ERR_SEND_FAILED', 'gone'))
      await failed
      const iterated = (async () => {
        for await (const chunk of duplex) void chunk
      })()
      const error = await withTimeout(iterated, 2000, 'the iteration to end').then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_SEND_FAILED' })
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('is Node’s own iterator once the Duplex read face is in use', async () => {
      const { duplex, peer } = await rawPair()
      const ignore = (): void => {}
      duplex.pause()
      duplex.on('data', ignore)
      for (const text of ['a', 'bb']) peer.sendBinary(Buffer.from(text))
      const pinged = onceWithin(duplex.events, 'ping')
      peer.sendPing()
      await pinged
      duplex.off('data', ignore)
      const iterator = duplex[Symbol.asyncIterator]()
      const first = await withTimeout(iterator.next(), 2000, 'a chunk')
      expect(Buffer.from(first.value as Buffer).toString()).to.equal('abb')
      await iterator.return?.()
    })
  })

  describe('text frames', () => {
    it("'error' (default): warns, closes with 1003, delivers earlier bytes, then errors", async () => {
      const { duplex, peer } = await rawPair()
      const warnings: WsDuplexError[] = []
      duplex.events.on('warning', (error) => warnings.push(error))
      peer.sendBinary(Buffer.from('before'))
      peer.sendText('not bytes')
      peer.sendBinary(Buffer.from('after'))
      const close = await peer.readUntilClose()
      expect(close.close?.code).to.equal(1003)
      peer.sendClose(1003)
      const chunks: Buffer[] = []
      duplex.on('data', (chunk: Buffer) => chunks.push(chunk))
      const error = await streamError(duplex)
      expect(Buffer.concat(chunks).toString()).to.equal('before')
      expect(error).to.include({ code: 'ERR_TEXT_FRAME', closeCode: 1003 })
      expect(warnings.map((w) => w.code)).to.deep.equal(['ERR_TEXT_FRAME'])
    })

    it('a text frame after our close frame errors with the code that went out, not 1003', async () => {
      const { duplex, peer } = await rawPair()
      duplex.end()
      const close = await peer.readUntilClose()
      expect(close.close?.code).to.equal(1000)
      // Too late for a 1003: our 1000 is on the wire (RFC 6455 §5.5.1: one close frame each).
      peer.sendText('not bytes')
      peer.sendClose(1000)
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_TEXT_FRAME', closeCode: 1000 })
    })

    it("a protocol error or an oversize message after our close frame carries its code, not ws's", async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const cases = [
        ['a reserved opcode', 'ERR_PROTOCOL', (peer: RawPeer) => peer.sendFrame({ opcode: 3 })],
        [
          'a message over maxPayload',
          'ERR_PAYLOAD_TOO_LARGE',
          (peer: RawPeer) => peer.sendBinary(Buffer.alloc(2000))
        ]
      ] as const
      for (const [what, code, send] of cases) {
        const duplex = await openDuplex(cleanup, raw.url, {}, { maxPayload: 1000 })
        const peer = await raw.nextPeer()
        duplex.end()
        expect((await peer.readUntilClose()).close?.code, what).to.equal(1000)
        // ws would send 1002 / 1009, but our 1000 is the one close frame this side sends.
        send(peer)
        const error = await streamError(duplex)
        expect(error, what).to.include({ code, closeCode: 1000 })
      }
    })

    it("'ignore': warns, drops the frame and goes on", async () => {
      const { duplex, peer } = await rawPair({ text: 'ignore' })
      const warning = onceWithin<[WsDuplexError]>(duplex.events, 'warning')
      peer.sendBinary(Buffer.from('a'))
      peer.sendText('dropped')
      peer.sendBinary(Buffer.from('b'))
      peer.sendClose(1000)
      expect((await collect(duplex)).toString()).to.equal('ab')
      expect((await warning)[0].code).to.equal('ERR_TEXT_FRAME')
    })

    it("'bytes': delivers the text payload as bytes", async () => {
      const { duplex, peer } = await rawPair({ text: 'bytes' })
      peer.sendBinary(Buffer.from('a'))
      peer.sendText('é')
      peer.sendClose(1000)
      expect((await collect(duplex)).toString()).to.equal('aé')
    })
  })

  describe('ending', () => {
    it("'finish' waits for the peer's answer to our close: a pipeline() in fails if it is not clean", async () => {
      const endings = [
        ['answers 1000', (peer: RawPeer) => peer.sendClose(1000), undefined],
        [
          'answers 1011',
          (peer: RawPeer) => peer.sendClose(1011, 'disk full'),
          'ERR_PEER_CLOSED_WITH_ERROR'
        ],
        ['resets', (peer: RawPeer) => peer.reset(), 'ERR_ABNORMAL_CLOSURE']
      ] as const
      for (const [what, answer, code] of endings) {
        const { duplex, peer } = await rawPair()
        let finished = false
        duplex.once('finish', () => (finished = true))
        const piping = pipeline(Readable.from([Buffer.from('all of it')]), duplex)
        const got = await peer.readUntilClose()
        expect(got.close?.code, what).to.equal(1000)
        expect(finished, what).to.equal(false)
        answer(peer)
        const error = await withTimeout(piping, 2000, 'pipeline()').then(
          () => undefined,
          (e: { code?: string }) => e.code ?? String(e)
        )
        expect(error, what).to.equal(code)
      }
    })

    it('ends cleanly only after a close frame with 1000, 1001 or 1005', async () => {
      for (const code of [1000, 1001, undefined]) {
        const { duplex, peer } = await rawPair()
        peer.sendBinary(Buffer.from('data'))
        peer.sendClose(code)
        const [info] = await Promise.all([closeEvent(duplex), collect(duplex)]).then(([c]) => c)
        expect(info.wasClean, `code ${code}`).to.equal(true)
        expect(info.code).to.equal(code ?? 1005)
      }
    })

    it('errors with ERR_ABNORMAL_CLOSURE and closeCode 1006 when the peer resets', async () => {
      const { duplex, peer } = await rawPair()
      peer.sendBinary(Buffer.from('partial'))
      await onceWithin(duplex, 'readable')
      peer.reset()
      const chunks: Buffer[] = []
      duplex.on('data', (chunk: Buffer) => chunks.push(chunk))
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_ABNORMAL_CLOSURE', closeCode: 1006 })
      expect(Buffer.concat(chunks).toString()).to.equal('partial')
      expect(duplex.closeInfo).to.include({ code: 1006, wasClean: false })
    })

    it('errors with ERR_ABNORMAL_CLOSURE when the peer sends FIN without a close frame', async () => {
      const { duplex, peer } = await rawPair()
      peer.end()
      duplex.resume()
      expect(await streamError(duplex)).to.include({
        code: 'ERR_ABNORMAL_CLOSURE',
        closeCode: 1006
      })
    })

    it('errors with ERR_PEER_CLOSED_WITH_ERROR when the peer closes with 1011', async () => {
      const { duplex, peer } = await rawPair()
      peer.sendClose(1011, 'boom')
      duplex.resume()
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
    })
  })

  describe('#end', () => {
    it("a writer that never reads still gets 'end' and 'close' after the clean close", async () => {
      const { duplex, peer } = await rawPair()
      duplex.end(Buffer.from('hello'))
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('hello')
      peer.sendClose(1000)
      // As with a net.Socket: nothing is left unread, so the Readable ends and the stream closes.
      await withTimeout(finished(duplex), 2000, 'finished()')
      expect(duplex.destroyed).to.equal(true)
    })

    it('flushes every byte, then sends a close frame with 1000 and reads until the answer', async () => {
      const { duplex, peer } = await rawPair()
      const payload = patternBytes(150_000)
      duplex.write(payload.subarray(0, 1000))
      duplex.end(payload.subarray(1000))
      const got = await peer.readUntilClose()
      expect(got.data.equals(payload)).to.equal(true)
      expect(got.close).to.deep.equal({ code: 1000, reason: '' })
      const closeFrame = got.frames.at(-1)
      expect(closeFrame?.payload.length, 'never an empty close frame').to.equal(2)
      // The peer may still send data before answering (RFC 6455 §5.5.1).
      peer.sendBinary(Buffer.from('late'))
      peer.sendClose(1000)
      expect((await collect(duplex)).toString()).to.equal('late')
      expect(duplex.closeInfo).to.deep.equal({ code: 1000, reason: '', wasClean: true })
    })

    it('resumes a paused socket so the answering close frame can be read', async () => {
      const { duplex, peer } = await rawPair({ readableHighWaterMark: 1024 })
      peer.sendBinary(patternBytes(256 * 1024))
      await onceWithin(duplex, 'readable')
      expect(duplex.socket.isPaused).to.equal(true)
      duplex.end()
      const got = await peer.readUntilClose()
      expect(got.close?.code).to.equal(1000)
      peer.sendClose(1000)
      const [info] = await closeEvent(duplex)
      expect(info.wasClean).to.equal(true)
    })
  })

  describe('#close', () => {
    for (const code of [999, 1004, 1005, 1006, 1015, 2999, 5000, 1000.5]) {
      it(`refuses code ${code} with a RangeError and leaves the stream usable`, async () => {
        const { duplex, peer } = await rawPair()
        expect(() => duplex.close(code)).to.throw(RangeError, /code/)
        duplex.end(Buffer.from('still works'))
        const got = await peer.readUntilClose()
        expect(got.data.toString()).to.equal('still works')
        expect(got.close?.code).to.equal(1000)
      })
    }

    it('refuses a non-number code with a TypeError and a reason over 123 bytes with a RangeError', async () => {
      const { duplex } = await rawPair()
      expect(() => duplex.close('1000' as unknown as number)).to.throw(TypeError, /code/)
      expect(() => duplex.close(1000, 'é'.repeat(62))).to.throw(RangeError, /reason/)
      expect(() => duplex.close(1000, 'x'.repeat(123))).not.to.throw()
    })

    it('sends the code and reason given, and resolves once the peer answers', async () => {
      const { duplex, peer } = await rawPair()
      const result = duplex.close(4000, 'bye')
      const got = await peer.readUntilClose()
      expect(got.close).to.deep.equal({ code: 4000, reason: 'bye' })
      peer.sendClose(4000, 'bye')
      expect(await withTimeout(result, 2000, 'close()')).to.deep.equal({
        code: 4000,
        reason: 'bye',
        wasClean: true
      })
      expect(await duplex.close(), 'at once when already closed').to.deep.equal(duplex.closeInfo)
    })

    it('keeps the code of the first close() while its flush is under way; a later one waits for it', async () => {
      const { duplex, peer } = await rawPair()
      duplex.write(Buffer.alloc(256 * 1024, 1))
      const first = duplex.close(4000, 'first')
      const later = duplex.close(1001, 'later')
      const got = await peer.readUntilClose()
      expect(got.close).to.deep.equal({ code: 4000, reason: 'first' })
      expect(got.data.length).to.equal(256 * 1024)
      peer.sendClose(4000, 'first')
      const results = await withTimeout(Promise.all([first, later]), 2000, 'both close()')
      for (const result of results) {
        expect(result).to.deep.equal({ code: 4000, reason: 'first', wasClean: true })
      }
    })

    it('emits closing (local) then exactly one close', async () => {
      const { duplex, peer } = await rawPair()
      const seen: string[] = []
      duplex.events.on('closing', (info) => seen.push(`closing:${info.initiator}:${info.code}`))
      duplex.events.on('close', (info) => seen.push(`close:${info.code}:${info.wasClean}`))
      duplex.resume()
      const streamClosed = onceWithin(duplex, 'close')
      const closed = duplex.close()
      await peer.readUntilClose()
      peer.sendClose(1000)
      await closed
      await streamClosed
      expect(seen).to.deep.equal(['closing:local:1000', 'close:1000:true'])
    })

    for (const [ending, end] of [
      ["the peer's 1011", (peer: RawPeer) => peer.sendClose(1011)],
      ['a reset', (peer: RawPeer) => peer.reset()]
    ] as const) {
      it(`emits the warning for ${ending} before close, which comes last`, async () => {
        const { duplex, peer } = await rawPair()
        duplex.on('error', () => {})
        const seen: string[] = []
        duplex.events.on('closing', (info) => seen.push(`closing:${info.code}`))
        duplex.events.on('warning', (error) => seen.push(`warning:${error.code}`))
        duplex.events.on('close', (info) => seen.push(`close:${info.code}`))
        duplex.resume()
        const closed = onceWithin(duplex.events, 'close')
        end(peer)
        await closed
        expect(seen.at(-1)).to.match(/^close:/)
        expect(seen.filter((event) => event.startsWith('warning:'))).to.have.length(1)
      })
    }

    it('emits closing (remote) when the peer starts the close', async () => {
      const { duplex, peer } = await rawPair()
      const closing = onceWithin<[{ initiator: string; code: number }]>(duplex.events, 'closing')
      peer.sendClose(1001, 'going')
      duplex.resume()
      expect((await closing)[0]).to.deep.include({ initiator: 'remote', code: 1001 })
      const answer = await peer.readUntilClose()
      expect(answer.close?.code).to.equal(1001)
    })
  })

  describe('close timeout', () => {
    it('terminates and errors with ERR_CLOSE_TIMEOUT when the peer never answers', async () => {
      const { duplex, peer } = await rawPair({ closeTimeout: 200 })
      duplex.resume()
      const failed = streamError(duplex)
      duplex.end()
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
      expect(await failed).to.include({ code: 'ERR_CLOSE_TIMEOUT', closeCode: 1006 })
      await peer.tcpClosed()
    })

    it('ends cleanly when the peer answered the close but keeps TCP open', async () => {
      const { duplex, peer } = await halfOpenPair({ closeTimeout: 300 })
      const errors: Error[] = []
      duplex.on('error', (error: Error) => errors.push(error))
      const received = collect(duplex)
      const result = duplex.close()
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
      peer.sendClose(1000)
      // The handshake is complete; only our closeTimeout ends the lingering TCP connection.
      const info = await withTimeout(result, 3000, 'close()')
      expect(info).to.deep.equal({ code: 1000, reason: '', wasClean: true })
      expect((await received).length).to.equal(0)
      expect(errors).to.deep.equal([])
    })

    it('close() after the peer started the close waits for TCP, not for a flush', async () => {
      const { duplex, peer } = await halfOpenPair({ closeTimeout: 300 })
      const errors: Error[] = []
      duplex.on('error', (error: Error) => errors.push(error))
      duplex.resume()
      peer.sendClose(1000)
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
      const info = await withTimeout(duplex.close(), 3000, 'close()')
      expect(info).to.deep.equal({ code: 1000, reason: '', wasClean: true })
      expect(errors).to.deep.equal([])
    })

    it('keepalive does not fail a close the peer answered but lingers over', async () => {
      const { duplex, peer } = await halfOpenPair({
        closeTimeout: 500,
        keepAlive: { interval: 40, timeout: 60 }
      })
      const errors: Error[] = []
      duplex.on('error', (error: Error) => errors.push(error))
      duplex.resume()
      const result = duplex.close()
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
      peer.sendClose(1000)
      // The peer now stays silent: no pong for keepalive, no FIN.
      expect((await withTimeout(result, 3000, 'close()')).wasClean).to.equal(true)
      expect(errors).to.deep.equal([])
    })

    it('bounds a write refused after a FIN that leaves our bytes stuck', async () => {
      const { duplex, peer } = await rawPair({ closeTimeout: 300 })
      duplex.resume()
      peer.pause()
      const errored = streamError(duplex)
      // Fill the kernel buffers while every write is still accepted (a paused peer reads none).
      const chunk = patternBytes(64 * 1024)
      await until(() => {
        duplex.write(chunk)
        return duplex.socket.bufferedAmount > 0
      }, 'bytes held by ws')
      peer.end()
      // ws sees the FIN and starts closing, but cannot flush to a peer that reads nothing.
      await until(() => duplex.socket.readyState === WebSocket.CLOSING, 'ws to start closing')
      const written = writeOutcome(duplex, chunk)
      const error = await withTimeout(written, 3000, 'the late write() callback')
      expect(error).to.be.instanceOf(WsDuplexError)
      expect(await errored).to.equal(error)
    })

    it('counts from when the close frame is flushed, not from end()', async () => {
      const { duplex, peer } = await rawPair({ closeTimeout: 1000 })
      duplex.resume()
      peer.pause()
      // Far more than the kernel buffers hold: end() must wait for the peer to read it all.
      const payload = patternBytes(24 * 1024 * 1024)
      let flushedAt = 0
      duplex.end(payload, () => {
        flushedAt = Date.now()
      })
      // The passing time is what is under test: two close timeouts go by with the writer
      // stuck, and no timeout may fire because our close frame has not been flushed yet.
      await new Promise((resolve) => setTimeout(resolve, 2100))
      expect(flushedAt, 'end() completes only once every byte is flushed').to.equal(0)
      peer.resume()
      const got = await peer.readUntilClose(10_000)
      expect(createHash('sha1').update(got.data).digest('hex')).to.equal(
        createHash('sha1').update(payload).digest('hex')
      )
      peer.sendClose(1000)
      const [info] = await closeEvent(duplex)
      expect(info.wasClean).to.equal(true)
    })
    it('close() waits for a slow flush that still progresses, then times the handshake', async () => {
      const { duplex, peer } = await rawPair({ closeTimeout: 1000 })
      duplex.resume()
      peer.pause()
      duplex.write(patternBytes(16 * 1024 * 1024))
      const started = Date.now()
      const result = duplex.close()
      // Two stalls of most of a timeout each, with a little reading between: a flush slower
      // than one timeout in all, whose every pause is shorter (by a margin a loaded CI box
      // keeps).
      const stall = 600
      setTimeout(() => {
        peer.resume()
        setTimeout(() => {
          peer.pause()
          setTimeout(() => peer.resume(), stall).unref()
        }, 20).unref()
      }, stall).unref()
      const got = await peer.readUntilClose(10_000)
      expect(Date.now() - started, 'the flush took longer than one closeTimeout').to.be.above(1000)
      expect(got.data.length).to.equal(16 * 1024 * 1024)
      expect(got.close?.code).to.equal(1000)
      peer.sendClose(1000)
      expect((await withTimeout(result, 3000, 'close()')).wasClean).to.equal(true)
    })

    it('close() gives up with ERR_CLOSE_TIMEOUT when the peer stops reading', async () => {
      const { duplex, peer } = await rawPair({ closeTimeout: 300 })
      duplex.resume()
      peer.pause()
      duplex.write(patternBytes(16 * 1024 * 1024))
      const failed = streamError(duplex)
      const result = await withTimeout(duplex.close(), 3000, 'close()')
      expect(result.wasClean).to.equal(false)
      expect(await failed).to.include({ code: 'ERR_CLOSE_TIMEOUT' })
      // A paused socket reads nothing, not even the end of the connection.
      peer.resume()
      await peer.tcpClosed()
    })
  })

  describe('#destroy', () => {
    it('after the peer closed with 1011, reports the ending as not clean', async () => {
      const { duplex } = await peerClosedWith1011()
      const closed = closeEvent(duplex)
      duplex.destroy()
      const [info] = await closed
      expect(info).to.deep.equal({ code: 1011, reason: 'server broke', wasClean: false })
    })

    it('sends every small write of the current tick, then 1000 (requests written, then destroy())', async () => {
      const { duplex, peer } = await rawPair()
      const outcomes = ['GET /a', 'GET /b', 'GET /c'].map((request) =>
        writeOutcome(duplex, Buffer.from(request))
      )
      duplex.destroy()
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('GET /aGET /bGET /c')
      expect(got.close?.code).to.equal(1000)
      for (const outcome of await Promise.all(outcomes)) expect(outcome ?? null).to.equal(null)
    })

    it('sends 1000 and terminates without waiting when destroyed without an error', async () => {
      const { duplex, peer } = await rawPair()
      const closed = onceWithin(duplex, 'close')
      duplex.destroy()
      await closed
      const got = await peer.readUntilClose()
      expect(got.close?.code).to.equal(1000)
      await peer.tcpClosed()
    })

    it('sends 1000 after writes without end() once every byte went out (a request, its reply read)', async () => {
      const { duplex, peer } = await rawPair()
      await new Promise<void>((resolve) => duplex.write(Buffer.from('request'), () => resolve()))
      peer.sendBinary(Buffer.from('reply'))
      for await (const chunk of duplex) {
        expect(Buffer.from(chunk as Uint8Array).toString()).to.equal('reply')
        break
      }
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('request')
      expect(got.close?.code).to.equal(1000)
    })

    it('sends 1011 while a sink still runs: the peer must not see a complete transfer', async () => {
      const { duplex, peer } = await rawPair()
      async function* source(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('first part')
        await new Promise(() => {})
      }
      const sinking = duplex.sink(source()).catch((e: unknown) => e)
      expect((await peer.nextFrame()).payload.toString()).to.equal('first part')
      duplex.destroy()
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
      expect(await sinking).to.include({ code: 'ERR_STREAM_CLOSED' })
    })

    it('sends 1000 after end() when every written byte still goes out first', async () => {
      const { duplex, peer } = await rawPair()
      duplex.end(Buffer.from('all of it'))
      duplex.destroy()
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('all of it')
      expect(got.close?.code).to.equal(1000)
    })

    it('an aborted pipeline into it gives the peer 1011, not 1000', async () => {
      const { duplex, peer } = await rawPair()
      duplex.on('error', () => {})
      const controller = new AbortController()
      let sent = 0
      const source = new Readable({
        read() {
          sent += 100
          this.push(Buffer.alloc(100))
          if (sent === 1000) controller.abort()
        }
      })
      const piping = pipeline(source, duplex, { signal: controller.signal }).catch(
        (e: unknown) => e
      )
      expect(await withTimeout(piping, 2000, 'pipeline()')).to.include({ name: 'AbortError' })
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('sends the bytes written in the same tick before its close frame', async () => {
      const { duplex, peer } = await rawPair()
      duplex.on('error', () => {})
      duplex.write(Buffer.from('accepted'))
      duplex.destroy(new Error('stop'))
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('accepted')
      expect(got.close?.code).to.equal(1011)
    })

    it('sends the full frames of a same-tick write at once and the rest before its close frame', async () => {
      const { duplex, peer } = await rawPair({ maxFrameSize: 16 * 1024 })
      duplex.on('error', () => {})
      const payload = patternBytes(4 * 16 * 1024 + 100)
      duplex.write(payload)
      duplex.destroy(new Error('stop'))
      const got = await peer.readUntilClose()
      const binary = got.frames.filter((frame) => frame.opcode === Opcode.Binary)
      expect(binary.map((frame) => frame.payload.length)).to.deep.equal([
        16384, 16384, 16384, 16384, 100
      ])
      expect(Buffer.compare(got.data, payload)).to.equal(0)
      expect(got.close?.code).to.equal(1011)
    })

    it('with permessage-deflate, drops the same-tick bytes and still sends 1011', async () => {
      const server = await startWsServer(cleanup, { perMessageDeflate: true })
      const duplex = await connect(server.url, { perMessageDeflate: true })
      cleanup.add(() => {
        duplex.destroy()
      })
      const ws = await server.nextSocket()
      const received: Buffer[] = []
      ws.on('message', (data: Buffer) => received.push(data))
      const closed = onceWithin<[number]>(ws, 'close')
      duplex.on('error', () => {})
      // Big enough to be compressed, which ws does on another thread.
      duplex.write(patternBytes(8 * 1024))
      duplex.destroy(new Error('stop'))
      const [code] = await closed
      expect(code).to.equal(1011)
      expect(received.length).to.equal(0)
    })

    it("sends 1011, emits the caller's error and fails pending writes", async () => {
      const { duplex, peer } = await rawPair()
      peer.pause()
      const writeErrors: (Error | null | undefined)[] = []
      const big = patternBytes(4 * 1024 * 1024)
      for (let i = 0; i < 8; i++) duplex.write(big, (error) => writeErrors.push(error))
      const mine = new Error('mine')
      const emitted = streamError(duplex)
      const closed = new Promise((resolve) => duplex.once('close', resolve))
      duplex.destroy(mine)
      expect(await emitted).to.equal(mine)
      await withTimeout(closed, 2000, "'close'")
      expect(writeErrors.filter((error) => error instanceof Error).length).to.be.greaterThan(0)
      peer.resume()
      const frames = await peer.readUntilClose().catch(() => undefined)
      if (frames?.close) expect(frames.close.code).to.equal(1011)
    })

    it('emits nothing after close', async () => {
      const { duplex, peer } = await rawPair()
      const after: string[] = []
      duplex.on('close', () => {
        for (const name of ['data', 'error', 'end', 'finish'])
          duplex.on(name, () => after.push(name))
        duplex.events.on('close', () => after.push('events.close'))
      })
      const closed = onceWithin(duplex, 'close')
      duplex.destroy()
      await closed
      peer.sendBinary(Buffer.from('ignored'))
      await peer.tcpClosed()
      expect(after).to.deep.equal([])
    })

    it('breaking out of for await gives the peer 1000', async () => {
      const { duplex, peer } = await rawPair()
      peer.sendBinary(Buffer.from('one'))
      for await (const chunk of duplex) {
        expect(Buffer.from(chunk as Uint8Array).toString()).to.equal('one')
        break
      }
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
    })

    it('a failing pipeline gives the peer 1011', async () => {
      const { duplex, peer } = await rawPair()
      const failing = new Readable({
        read() {
          this.destroy(new Error('source failed'))
        }
      })
      await pipeline(failing, duplex).catch(() => undefined)
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })
  })

  describe('backpressure', () => {
    it('pauses the socket when the reader falls behind, with bounded buffering', async () => {
      const { url, nextSocket } = await startWsServer(cleanup)
      const client = await openDuplex(cleanup, url, { readableHighWaterMark: 64 * 1024 })
      const sender = new WsDuplex(await nextSocket())
      const payload = patternBytes(16 * 1024 * 1024)
      sender.end(payload)
      await onceWithin(client, 'readable')
      // Wait until the socket has paused (bounded), then check what was buffered for us.
      await withTimeout(
        new Promise<void>((resolve) => {
          const check = (): void => (client.socket.isPaused ? resolve() : void setTimeout(check, 5))
          check()
        }),
        2000,
        'the socket to pause'
      )
      expect(client.readableLength).to.be.at.most(64 * 1024 + 256 * 1024)
      const got = await collect(client, 10_000)
      expect(got.equals(payload)).to.equal(true)
    })

    it('returns false past the high water mark and bounds what it accepts from the writer', async () => {
      const { duplex, peer } = await rawPair({ writableHighWaterMark: 64 * 1024 })
      peer.pause()
      const chunk = patternBytes(64 * 1024)
      let accepted = 0
      let offered = 0
      // Offer 256 MiB; a stalled peer must stop us long before that.
      const writer = new Writable({
        highWaterMark: 64 * 1024,
        write(data: Buffer, _encoding, callback) {
          duplex.write(data, (error) => {
            if (!error) accepted += data.length
          })
          if (duplex.writableNeedDrain) duplex.once('drain', () => callback())
          else callback()
        }
      })
      cleanup.add(() => {
        writer.destroy()
      })
      const { stalled: writerStalled, stop } = whenStalled(() => offered, 300)
      cleanup.add(stop)
      await withTimeout(
        new Promise<void>((resolve) => {
          const pump = (): void => {
            while (offered < 256 * 1024 * 1024) {
              offered += chunk.length
              if (!writer.write(chunk)) {
                writer.once('drain', pump)
                return
              }
            }
            resolve()
          }
          pump()
          duplex.socket.once('close', () => resolve())
          // Done when the writer has been stuck behind backpressure for a while.
          void writerStalled.then(resolve)
        }),
        8000,
        'the writer to stall'
      )
      expect(offered).to.be.below(256 * 1024 * 1024)
      expect(accepted, 'accepted bytes stay bounded').to.be.below(48 * 1024 * 1024)
      expect(duplex.writableLength).to.be.at.most(64 * 1024 + chunk.length)
    })

    // Small writes are copied into the queue, large ones sent from the writer's memory.
    for (const size of [1024, 64 * 1024]) {
      it(`a writer may reuse its ${size / 1024} KiB buffer once the write callback ran: the bytes sent do not change`, async () => {
        // Server side (no masking, so no copy by ws): the socket holds our views until the
        // kernel takes them, which a paused reader delays.
        const server = await createServer({ port: 0, host: '127.0.0.1' })
        cleanup.add(() => server.close())
        const accepted = onceWithin<[WsDuplex]>(server, 'connection')
        const { port } = server.address() as AddressInfo
        const client = new WebSocket(`ws://127.0.0.1:${port}`)
        cleanup.add(() => client.terminate())
        const received = createHash('sha256')
        let receivedBytes = 0
        client.on('message', (data: Buffer) => {
          received.update(data)
          receivedBytes += data.length
        })
        const clientClosed = onceWithin(client, 'close', 10_000)
        await onceWithin(client, 'open')
        client.pause()
        const [duplex] = await accepted
        const buffer = Buffer.alloc(size)
        const writes = (8 * 1024 * 1024) / size
        const sent = createHash('sha256')
        const writing = (async () => {
          for (let i = 0; i < writes; i++) {
            // Refilled as soon as the last write's callback says it is done with.
            buffer.fill(i)
            sent.update(buffer)
            await new Promise<void>((resolve, reject) =>
              duplex.write(buffer, (error) => (error ? reject(error) : resolve()))
            )
          }
          duplex.end()
        })()
        await until(() => duplex.socket.bufferedAmount > 0, 'the socket to hold our bytes')
        client.resume()
        await withTimeout(writing, 10_000, 'the writes')
        await clientClosed
        expect(receivedBytes).to.equal(8 * 1024 * 1024)
        expect(received.digest('hex')).to.equal(sent.digest('hex'))
      })
    }

    it("does not count ws's pongs against the high water mark (a sink goes on)", async () => {
      const hwm = 2048
      const { duplex, peer } = await rawPair({ writableHighWaterMark: hwm })
      const first = patternBytes(1000, 1)
      const second = patternBytes(1000, 2)
      // Our only frame so far has left: nothing of ours is due a send callback.
      let firstSent: () => void = () => {}
      const firstWritten = new Promise<void>((resolve) => (firstSent = resolve))
      let askedPastSecond = false
      async function* source(): AsyncGenerator<Uint8Array> {
        yield first
        await firstWritten
        yield second
        askedPastSecond = true
      }
      const sinking = duplex.sink(source())
      expect(Buffer.from((await peer.nextFrame(2000)).payload)).to.deep.equal(first)
      peer.pause()
      // ws answers every ping (§5.5.2). With the peer not reading, the pongs fill the kernel's
      // buffers and then wait in the socket, behind no frame of ours. ws terminates a connection
      // with more than 60 pongs waiting (its maxPendingAutoPongs), so the pings go in batches
      // that keep fewer than 50 waiting.
      const ping = encodeFrame({ opcode: Opcode.Ping, payload: Buffer.alloc(125) })
      let pings = 0
      let sent = 0
      let batchAnswered: (() => void) | undefined
      const onPing = (): void => {
        if (++pings === sent) batchAnswered?.()
      }
      duplex.socket.on('ping', onPing)
      cleanup.add(() => {
        duplex.socket.off('ping', onPing)
      })
      while (duplex.socket.bufferedAmount <= 2 * hwm) {
        expect(sent, 'pings sent before the pongs back up').to.be.below(1_000_000)
        // A masked pong of 125 bytes is 131 on the wire; count 100 each to stay on the safe side.
        const count = Math.min(40, 50 - Math.ceil(duplex.socket.bufferedAmount / 100))
        const answered = new Promise<void>((resolve) => (batchAnswered = resolve))
        sent += count
        peer.writeRaw(Buffer.concat(Array.from({ length: count }, () => ping)))
        await withTimeout(answered, 5000, `ws to receive ${sent} pings`)
        // The send callbacks of the pongs the kernel took run on the next ticks.
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
      // Only our own queued and unsent bytes count. The pongs are ws's: counting them could hold
      // a sink that no send callback of ours is left to release.
      firstSent()
      await until(() => askedPastSecond, 'the sink to ask past the second chunk', 2000, 1)
      peer.resume()
      const { frames, close } = await peer.readUntilClose(10_000)
      peer.sendClose(1000)
      await withTimeout(sinking, 5000, 'the sink')
      const binary = frames.filter((frame) => frame.opcode === Opcode.Binary)
      expect(binary.map((frame) => Buffer.from(frame.payload))).to.deep.equal([second])
      expect(frames.filter((frame) => frame.opcode === Opcode.Pong)).to.have.length(sent)
      expect(close?.code).to.equal(1000)
    })
  })

  describe('framing', () => {
    it('coalesces small writes queued in one tick into one frame', async () => {
      const { duplex, peer } = await rawPair()
      for (let i = 0; i < 1000; i++) duplex.write(Buffer.from('0123456789'))
      duplex.end()
      const got = await peer.readUntilClose()
      const binary = got.frames.filter((frame) => frame.opcode === Opcode.Binary)
      expect(got.data.length).to.equal(10_000)
      expect(binary.length).to.be.at.most(2)
    })

    it('splits a write larger than maxFrameSize', async () => {
      const { duplex, peer } = await rawPair({ maxFrameSize: 64 * 1024 })
      const payload = patternBytes(3 * 64 * 1024 + 8192)
      duplex.end(payload)
      const got = await peer.readUntilClose()
      const sizes = got.frames
        .filter((f) => f.opcode === Opcode.Binary)
        .map((f) => f.payload.length)
      expect(sizes).to.deep.equal([65536, 65536, 65536, 8192])
      expect(got.data.equals(payload)).to.equal(true)
    })

    it('cuts the writes of one tick into full frames and one last short one (property)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 20 }),
          fc.integer({ min: 64, max: 5000 }),
          async (lengths, maxFrameSize) => {
            const { duplex, peer } = await rawPair({ maxFrameSize })
            const payload = patternBytes(lengths.reduce((sum, n) => sum + n, 0))
            let offset = 0
            for (const length of lengths) {
              duplex.write(payload.subarray(offset, offset + length))
              offset += length
            }
            duplex.end()
            const got = await peer.readUntilClose()
            const sizes = got.frames
              .filter((f) => f.opcode === Opcode.Binary)
              .map((f) => f.payload.length)
            const full = Math.floor(payload.length / maxFrameSize)
            const rest = payload.length % maxFrameSize
            const expected = Array.from({ length: full }, () => maxFrameSize)
            if (rest > 0) expected.push(rest)
            expect(sizes).to.deep.equal(expected)
            expect(got.data.equals(payload)).to.equal(true)
          }
        ),
        { numRuns: 40 }
      )
    })

    it('sends nothing for an empty write', async () => {
      const { duplex, peer } = await rawPair()
      duplex.write(Buffer.alloc(0))
      duplex.end()
      const got = await peer.readUntilClose()
      expect(got.frames.map((f) => f.opcode)).to.deep.equal([Opcode.Close])
    })
  })

  describe('before open', () => {
    it('queues writes made while connecting and sends them on open', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const duplex = new WsDuplex(new WebSocket(raw.url))
      cleanup.add(() => {
        duplex.destroy()
      })
      duplex.write(Buffer.from('early '))
      duplex.end(Buffer.from('bird'))
      const peer = await raw.nextPeer()
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('early bird')
    })

    it('close() while connecting waits for the open: a slow handshake is no close timeout', async () => {
      const closeTimeout = 150
      const raw = await startRawServer({ noUpgradeResponse: true })
      cleanup.add(() => raw.close())
      const duplex = new WsDuplex(new WebSocket(raw.url), { closeTimeout })
      cleanup.add(() => {
        duplex.destroy()
      })
      const errors: Error[] = []
      duplex.on('error', (error: Error) => errors.push(error))
      const closed = duplex.close(1000)
      const peer = await raw.nextPeer()
      // The server answers the handshake well after closeTimeout (the stimulus, not a settle).
      const key = headerValue(peer.httpHead, 'sec-websocket-key') ?? ''
      await new Promise((resolve) => setTimeout(resolve, closeTimeout * 3))
      peer.writeRaw(
        Buffer.from(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`,
          'latin1'
        )
      )
      const frame = await peer.nextFrame(2000)
      expect(frame.opcode).to.equal(Opcode.Close)
      peer.sendClose(1000)
      peer.end()
      expect(await withTimeout(closed, 3000, 'close()')).to.include({ code: 1000, wasClean: true })
      expect(errors).to.deep.equal([])
    })

    it('fails queued writes with the handshake error when the upgrade is refused', async () => {
      const raw = await startRawServer({
        respond: () => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
      })
      cleanup.add(() => raw.close())
      const duplex = new WsDuplex(new WebSocket(raw.url))
      // An empty write too: nothing to send, but it is not done before the open.
      const emptyWriteError = writeOutcome(duplex, Buffer.alloc(0))
      const writeError = writeOutcome(duplex, Buffer.from('never sent'))
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 403 })
      expect(await withTimeout(writeError, 2000, 'the write callback')).to.include({
        code: 'ERR_HANDSHAKE_REJECTED'
      })
      expect(await withTimeout(emptyWriteError, 2000, 'the empty write callback')).to.include({
        code: 'ERR_HANDSHAKE_REJECTED'
      })
    })
  })

  describe('writes after the peer closed', () => {
    it("fails a write() after the Duplex's 'close' with Node's ERR_STREAM_DESTROYED", async () => {
      const { duplex, peer } = await rawPair()
      const closed = onceWithin(duplex, 'close')
      peer.sendClose(1000)
      await collect(duplex)
      await closed
      const error = await new Promise<Error | null | undefined>((resolve) =>
        duplex.write(Buffer.from('late'), resolve)
      )
      expect(error).to.be.instanceOf(Error)
      // Node's own code, as for any destroyed stream: the Writable refuses before ws-duplex sees it.
      expect((error as { code?: string }).code).to.equal('ERR_STREAM_DESTROYED')
    })
  })

  describe('events after close', () => {
    it("emits nothing on events after 'close', though a later write fails", async () => {
      const { duplex, peer } = await rawPair()
      const seen: string[] = []
      duplex.events.on('warning', (error) => seen.push(`warning ${error.code}`))
      duplex.events.on('close', () => seen.push('close'))
      duplex.on('error', () => {})
      // Nothing reads: the stream is not over when the connection is.
      peer.sendClose(1000)
      await closeEvent(duplex)
      const error = await writeOutcome(duplex, Buffer.from('late'))
      expect(error).to.be.instanceOf(Error)
      expect(seen).to.deep.equal(['close'])
    })
  })

  describe('ending while a piped reader drains an abnormal ending', () => {
    it('delivers every byte that arrived to a slow pipe, then fails end()', async () => {
      const { duplex, peer } = await rawPair({ readableHighWaterMark: 4 * 1024 * 1024 })
      const payload = patternBytes(20 * 65536)
      for (let i = 0; i < 20; i++) peer.sendBinary(payload.subarray(i * 65536, (i + 1) * 65536))
      peer.end()
      await closeEvent(duplex)
      const errored = streamError(duplex)
      const chunks: Buffer[] = []
      let ended: Promise<Error | null | undefined> | undefined
      const slow = new Writable({
        highWaterMark: 65536,
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk)
          ended ??= new Promise((resolve) => duplex.end(resolve))
          setImmediate(callback)
        }
      })
      duplex.pipe(slow)
      expect(await errored).to.include({ code: 'ERR_ABNORMAL_CLOSURE' })
      expect(Buffer.concat(chunks).equals(payload)).to.equal(true)
      expect(await ended).to.include({ code: 'ERR_ABNORMAL_CLOSURE' })
    })
  })

  describe('writing while the peer closes with 1011', () => {
    it('never reports success for a write refused while earlier frames still flush', async () => {
      const { duplex, peer } = await rawPair()
      duplex.resume()
      const errored = streamError(duplex)
      const big = patternBytes(16 * 1024 * 1024)
      duplex.write(big)
      // The write after `big` reaches the socket only once `big` is accepted: while closing.
      const late = writeOutcome(duplex, Buffer.from('late'))
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Binary)
      peer.sendClose(1000)
      const got = await peer.readUntilClose(10_000)
      peer.end()
      expect(got.data.length + 65536).to.equal(big.length)
      const error = await withTimeout(late, 3000, 'the late write() callback')
      expect(error).to.include({ code: 'ERR_STREAM_CLOSED', closeCode: 1000 })
      expect(await errored).to.equal(error)
    })

    for (const [closeCode, code] of [
      [1000, 'ERR_STREAM_CLOSED'],
      [1011, 'ERR_PEER_CLOSED_WITH_ERROR']
    ] as const) {
      it(`a peer's ${closeCode} while frames wait behind backpressure is ${code} with closeCode ${closeCode}`, async () => {
        const { duplex, peer } = await rawPair()
        duplex.resume()
        const errored = streamError(duplex)
        peer.pause()
        const chunk = patternBytes(65536)
        let written = 0
        for (let i = 0; i < 256; i++) {
          duplex.write(chunk, () => {
            written++
          })
        }
        // Frames wait in our queue and the socket's: they are sent once the peer reads again,
        // after ws has read the peer's close frame, so ws refuses them.
        const { stalled, stop } = whenStalled(() => written, 100)
        cleanup.add(stop)
        await withTimeout(stalled, 3000, 'the writer to stall')
        peer.sendClose(closeCode)
        // ws has read it (it has no event for that before TCP ends): it is closing.
        await until(() => duplex.socket.readyState === duplex.socket.CLOSING, 'ws to read it', 3000)
        peer.reset()
        const error = await withTimeout(errored, 3000, 'the stream error')
        expect(error).to.include({ code, closeCode })
        expect(duplex.closeInfo).to.include({ code: closeCode, wasClean: false })
      })
    }

    it('fails a write() in between with the 1011, not just "closed"', async () => {
      const { duplex, peer } = await peerClosedWith1011()
      const errored = streamError(duplex)
      const written = writeOutcome(duplex, Buffer.from('late'))
      peer.end()
      const error = await withTimeout(written, 3000, 'the write() callback')
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
      expect(await errored).to.equal(error)
    })

    it('rejects a sink() in between with the 1011, not just "closed"', async () => {
      const { duplex, peer } = await peerClosedWith1011()
      // The Duplex read face is in use (resume), so the stream emits the error too.
      const errored = streamError(duplex)
      const sinking = duplex.sink([Buffer.from('late')]).then(
        () => undefined,
        (error: unknown) => error
      )
      peer.end()
      const error = await withTimeout(sinking, 3000, 'sink()')
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
      expect(await errored).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR' })
    })
  })

  describe('writing after a reset left bytes unread', () => {
    /** The peer sends `unread` and resets; nobody reads, so the error waits for a reader. */
    async function resetWithUnreadBytes(): Promise<WsDuplex> {
      const { duplex, peer } = await rawPair()
      const closed = closeEvent(duplex)
      peer.sendBinary(Buffer.from('unread'))
      await onceWithin(duplex, 'readable')
      peer.reset()
      await closed
      expect(duplex.readableLength).to.equal(6)
      return duplex
    }

    it('fails end() with the reset instead of waiting forever', async () => {
      const duplex = await resetWithUnreadBytes()
      const errored = streamError(duplex)
      const ended = new Promise<Error | null | undefined>((resolve) => duplex.end(resolve))
      const error = await withTimeout(ended, 2000, 'the end() callback')
      expect(error).to.include({ code: 'ERR_ABNORMAL_CLOSURE', closeCode: 1006 })
      expect(await errored).to.equal(error)
    })

    it('fails write() with the reset instead of waiting forever', async () => {
      const duplex = await resetWithUnreadBytes()
      const errored = streamError(duplex)
      const written = writeOutcome(duplex, Buffer.from('late'))
      const error = await withTimeout(written, 2000, 'the write() callback')
      expect(error).to.include({ code: 'ERR_ABNORMAL_CLOSURE', closeCode: 1006 })
      expect(await errored).to.equal(error)
    })

    it('rejects sink() with the reset instead of waiting forever', async () => {
      const duplex = await resetWithUnreadBytes()
      const error = await withTimeout(
        duplex.sink([]).then(
          () => undefined,
          (e: unknown) => e
        ),
        2000,
        'sink()'
      )
      expect(error).to.include({ code: 'ERR_ABNORMAL_CLOSURE', closeCode: 1006 })
    })
  })

  describe('limits', () => {
    it('closes with 1009 and ERR_PAYLOAD_TOO_LARGE past maxPayload', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const duplex = await openDuplex(cleanup, raw.url, {}, { maxPayload: 1024 })
      const closing: unknown[] = []
      duplex.events.on('closing', (info) => closing.push(info))
      const peer = await raw.nextPeer()
      peer.sendBinary(Buffer.from('fine'))
      peer.sendBinary(patternBytes(2048))
      const got = await peer.readUntilClose()
      expect(got.close?.code).to.equal(1009)
      // ws sent that close frame itself, as it reported the error: the handshake has begun.
      expect(closing).to.deep.equal([{ code: 1009, reason: '', initiator: 'local' }])
      const chunks: Buffer[] = []
      duplex.on('data', (chunk: Buffer) => chunks.push(chunk))
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 1009 })
      expect(Buffer.concat(chunks).toString()).to.equal('fine')
    })

    it('after a protocol error, a peer that does not answer is cut off at closeTimeout', async () => {
      const server = await startWsServer(cleanup)
      const duplex = await openDuplex(
        cleanup,
        server.url,
        { closeTimeout: 200 },
        { maxPayload: 1024 }
      )
      const peer = await server.nextSocket()
      const failed = streamError(duplex)
      duplex.resume()
      // The peer stops reading once it sent the message: it never sees the 1009 ws sends.
      const sent = new Promise<number>((resolve) =>
        peer.send(patternBytes(2048), () => {
          peer.pause()
          resolve(performance.now())
        })
      )
      expect(await failed).to.include({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 1009 })
      // ws's own timer would wait closeTimeout + 1 s.
      expect(performance.now() - (await sent)).to.be.below(900)
    })

    it('a compressed message that does not inflate is ERR_PROTOCOL with the 1007 ws sent', async () => {
      const raw = await startRawServer({
        respond: (head) =>
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${acceptKey(headerValue(head, 'sec-websocket-key') ?? '')}\r\n` +
          'Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n'
      })
      cleanup.add(() => raw.close())
      const duplex = await openDuplex(cleanup, raw.url, {}, { perMessageDeflate: true })
      const peer = await raw.nextPeer()
      // RSV1 marks the message compressed (RFC 7692 §6); these bytes are no deflate stream.
      peer.sendFrame({
        opcode: Opcode.Binary,
        rsv: 0b100,
        payload: Buffer.from([0xff, 0xff, 0xff])
      })
      duplex.resume()
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_PROTOCOL', closeCode: 1007 })
      expect((await peer.readUntilClose()).close?.code).to.equal(1007)
    })

    it('answers a protocol violation with 1002 and ERR_PROTOCOL', async () => {
      const { duplex, peer } = await rawPair()
      peer.sendFrame({ opcode: 3, payload: Buffer.from('reserved opcode') })
      duplex.resume()
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_PROTOCOL', closeCode: 1002 })
      const got = await peer.readUntilClose()
      expect(got.close?.code).to.equal(1002)
    })
  })

  describe('reading after our close frame', () => {
    it('goes on past the mark to see the answer, but pauses at maxReadBuffer, losing nothing', async () => {
      const maxReadBuffer = 256 * 1024
      const { duplex, peer } = await rawPair({ maxReadBuffer })
      duplex.end()
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
      // A peer that keeps sending before it answers: 4 MiB nobody reads yet.
      const payload = patternBytes(4 * 1024 * 1024)
      for (let i = 0; i < payload.length; i += 64 * 1024) {
        peer.sendBinary(payload.subarray(i, i + 64 * 1024))
      }
      peer.sendClose(1000)
      const { stalled, stop } = whenStalled(() => duplex.readableLength, 100)
      cleanup.add(stop)
      await withTimeout(stalled, 3000, 'reading to stop')
      // At most one read of the socket past the limit.
      expect(duplex.readableLength)
        .to.be.above(64 * 1024)
        .and.at.most(maxReadBuffer + 128 * 1024)
      const received = await collect(duplex, 5000)
      expect(received.equals(payload)).to.equal(true)
      expect(duplex.closeInfo).to.deep.include({ code: 1000, wasClean: true })
    })
  })

  describe('keepalive', () => {
    it('pings when idle and terminates with ERR_KEEPALIVE_TIMEOUT when nothing answers', async () => {
      const { duplex, peer } = await rawPair({ keepAlive: { interval: 100, timeout: 150 } })
      duplex.resume()
      const failed = streamError(duplex)
      const ping = await peer.nextFrame(2000)
      expect(ping.opcode).to.equal(Opcode.Ping)
      expect(await failed).to.include({ code: 'ERR_KEEPALIVE_TIMEOUT' })
      await peer.tcpClosed()
    })

    it('pings a whole interval after the last incoming frame, not at the next check', async () => {
      const interval = 400
      const { duplex, peer } = await rawPair({ keepAlive: { interval, timeout: 2000 } })
      duplex.resume()
      duplex.on('error', () => {})
      const sentAt = performance.now()
      peer.sendBinary(Buffer.from('life'))
      const ping = await peer.nextFrame(3000)
      const silence = performance.now() - sentAt
      expect(ping.opcode).to.equal(Opcode.Ping)
      expect(silence).to.be.at.least(interval - 5)
      // A check sampled once per interval would wait for the second one: about 2 x interval.
      expect(silence).to.be.below(interval * 1.75)
    })

    it('leaves a close the peer started to closeTimeout: its 1000 is a clean end, not a keepalive timeout', async () => {
      const { duplex, peer } = await halfOpenPair({
        keepAlive: { interval: 100, timeout: 100 },
        closeTimeout: 800
      })
      const errors: Error[] = []
      duplex.on('error', (error: Error) => errors.push(error))
      const ended = onceWithin(duplex, 'end', 3000)
      duplex.resume()
      peer.sendClose(1000, 'bye')
      // ws answers and waits for TCP to end, which this peer never does; nor does it pong.
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
      const [info] = await closeEvent(duplex)
      await ended
      expect(errors).to.deep.equal([])
      expect(info).to.include({ code: 1000, wasClean: true })
    })

    // A late pong is the behaviour under test: the first look for it (at `interval`) finds none.
    for (const [when, pongDelay] of [
      ['at once', 0],
      ['later than one interval', 300]
    ] as const) {
      it(`pings again an interval after a pong ${when}, even with a timeout longer than the interval`, async () => {
        const interval = 200
        const timeout = 3000
        const { duplex, peer } = await rawPair({ keepAlive: { interval, timeout } })
        duplex.resume()
        duplex.on('error', () => {})
        const first = await peer.nextFrame(3000)
        expect(first.opcode).to.equal(Opcode.Ping)
        if (pongDelay > 0) await new Promise((resolve) => setTimeout(resolve, pongDelay))
        const answeredAt = performance.now()
        peer.sendPong(first.payload)
        const second = await peer.nextFrame(timeout + 1000)
        const silence = performance.now() - answeredAt
        expect(second.opcode).to.equal(Opcode.Ping)
        if (pongDelay === 0) expect(silence).to.be.at.least(interval - 5)
        // Waiting out the first ping's timeout before the next idle check would take `timeout`.
        expect(silence).to.be.below(timeout / 2)
      })
    }

    it('counts our frames the socket takes as life: a slow, steady reader is not cut off', async () => {
      // The socket takes our writes only when the kernel frees half its send buffer (up to
      // 2 MiB on loopback): at this pace about every 80 ms, slower on a loaded machine. The
      // timeout must cover several such gaps, and the transfer several timeouts.
      const { duplex, peer } = await rawPair({ keepAlive: { interval: 100, timeout: 400 } })
      const failures: Error[] = []
      duplex.on('error', (error: Error) => failures.push(error))
      // The peer never answers a ping and reads 64 KiB at a time, every 2 ms: the transfer
      // (1.3 s unloaded) takes far longer than the 500 ms after which an unanswered ping would
      // cut it.
      const size = 32 * 1024 * 1024
      let paced: NodeJS.Timeout | undefined
      const readSome = (): void => {
        peer.socket.once('data', () => {
          peer.pause()
          paced = setTimeout(readSome, 2)
        })
        peer.resume()
      }
      peer.pause()
      readSome()
      cleanup.add(() => clearTimeout(paced))
      // Written as a pipe writes, with backpressure: 64 KiB at a time.
      const bytes = patternBytes(size)
      Readable.from(
        (function* () {
          for (let at = 0; at < size; at += 64 * 1024) yield bytes.subarray(at, at + 64 * 1024)
        })()
      ).pipe(duplex)
      const got = await peer.readUntilClose(20_000)
      expect(failures).to.deep.equal([])
      expect(got.data.length).to.equal(size)
      expect(got.close?.code).to.equal(1000)
    })

    it('still cuts off a peer that takes our writes but never answers, while we keep writing', async () => {
      const { duplex, peer } = await rawPair({ keepAlive: { interval: 200, timeout: 200 } })
      duplex.resume()
      // The peer's kernel takes every small write at once: that proves nothing about the peer.
      const writer = setInterval(() => duplex.write(Buffer.from('tick')), 50)
      cleanup.add(() => clearInterval(writer))
      const failed = streamError(duplex, 3000)
      expect(await failed).to.include({ code: 'ERR_KEEPALIVE_TIMEOUT' })
      clearInterval(writer)
      await peer.tcpClosed()
    })

    it('counts any incoming frame as life', async () => {
      const { duplex, peer } = await rawPair({ keepAlive: { interval: 100, timeout: 150 } })
      duplex.resume()
      let failed = false
      duplex.on('error', () => {
        failed = true
      })
      // Answer each of our pings with data instead of a pong, for well past the timeout.
      for (let i = 0; i < 4; i++) {
        const frame = await peer.nextFrame(2000)
        expect(frame.opcode).to.equal(Opcode.Ping)
        peer.sendBinary(Buffer.from('alive'))
      }
      expect(failed).to.equal(false)
    })
  })

  describe('#ping', () => {
    it('resolves with the round-trip time', async () => {
      const { url } = await startWsServer(cleanup)
      const duplex = await openDuplex(cleanup, url)
      const rtt = await withTimeout(duplex.ping(), 2000, 'a pong')
      expect(rtt).to.be.a('number').and.at.least(0)
      const pong = onceWithin<[Uint8Array]>(duplex.events, 'pong')
      await duplex.ping(Buffer.from('hi'))
      expect(Buffer.from((await pong)[0]).toString()).to.equal('hi')
    })

    it('a pong for the latest of several pings answers the earlier ones too (RFC 6455 §5.5.3)', async () => {
      const { duplex, peer } = await rawPair()
      duplex.resume()
      const first = duplex.ping(Buffer.from('one'))
      const second = duplex.ping(Buffer.from('two'))
      expect((await peer.nextFrame(2000)).payload.toString()).to.equal('one')
      const latest = await peer.nextFrame(2000)
      // The peer answers only the most recent ping, as §5.5.3 allows.
      peer.sendPong(latest.payload)
      const [rttFirst, rttSecond] = await withTimeout(
        Promise.all([first, second]),
        2000,
        'both ping() calls'
      )
      expect(rttFirst).to.be.at.least(rttSecond)
    })

    it('matches the pong against the bytes as they were when ping() was called', async () => {
      const { duplex, peer } = await rawPair()
      duplex.resume()
      const payload = Buffer.from('abcd')
      const rtt = duplex.ping(payload)
      // The caller reuses its buffer at once (Buffer#slice would have kept a view of it).
      payload.fill(0)
      const ping = await peer.nextFrame(2000)
      expect(ping.payload.toString()).to.equal('abcd')
      peer.sendPong(ping.payload)
      expect(await withTimeout(rtt, 2000, 'ping() to resolve')).to.be.a('number')
    })

    it('an empty ping() is answered by its own pong, not by a keepalive pong', async () => {
      const { duplex, peer } = await rawPair({ keepAlive: { interval: 100, timeout: 2000 } })
      duplex.resume()
      let answered = false
      const rtt = duplex.ping(new Uint8Array(0)).then((ms) => {
        answered = true
        return ms
      })
      const userPing = await peer.nextFrame()
      expect(userPing).to.include({ opcode: Opcode.Ping })
      expect(userPing.payload).to.have.length(0)
      const keepAlivePing = await peer.nextFrame()
      expect(keepAlivePing.opcode).to.equal(Opcode.Ping)
      const pong = onceWithin<[Uint8Array]>(duplex.events, 'pong')
      peer.sendPong(keepAlivePing.payload)
      await pong
      expect(answered).to.equal(false)
      peer.sendPong(userPing.payload)
      expect(await withTimeout(rtt, 2000, 'the pong of the empty ping')).to.be.at.least(0)
    })

    it('rejects with ERR_STREAM_CLOSED when the connection closes first', async () => {
      const { duplex, peer } = await rawPair()
      const pending = duplex.ping()
      await peer.nextFrame()
      peer.reset()
      duplex.on('error', () => {})
      duplex.resume()
      const error = await pending.then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_STREAM_CLOSED' })
    })

    it('rejects with ERR_STREAM_CLOSED and the close code sent once our close has begun', async () => {
      const { duplex, peer } = await rawPair()
      duplex.on('error', () => {})
      void duplex.close(1000).catch(() => {})
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
      const error = await duplex.ping().then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_STREAM_CLOSED', closeCode: 1000 })
    })
  })

  describe('resources', () => {
    it('removes every listener it added to the socket and leaves no timer', async () => {
      // After one tick, so mocha's own timeout timer for this test is in the baseline.
      await Promise.resolve()
      const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
      const { duplex, peer } = await rawPair({ keepAlive: { interval: 1000, timeout: 1000 } })
      const ws = duplex.socket
      duplex.end(Buffer.from('x'))
      await peer.readUntilClose()
      peer.sendClose(1000)
      await onceWithin(duplex.events, 'close')
      for (const name of [
        'open',
        'message',
        'ping',
        'pong',
        'error',
        'close',
        'unexpected-response'
      ]) {
        expect(ws.listenerCount(name), name).to.equal(0)
      }
      const timersAfter = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
      expect(timersAfter).to.be.at.most(timersBefore)
    })

    it('listens for control frames only once events, ping() or keepAlive need them', async () => {
      // Each event name costs memory on every idle connection (ws keeps them in a dictionary).
      const { url } = await startWsServer(cleanup)
      const listened = (ws: WebSocket): string[] =>
        ['open', 'message', 'ping', 'pong', 'error', 'close', 'unexpected-response'].filter(
          (name) => ws.listenerCount(name) > 0
        )
      const idle = await openDuplex(cleanup, url)
      expect(listened(idle.socket)).to.deep.equal(['message', 'error', 'close'])
      const client = await connect(url)
      cleanup.add(() => {
        client.destroy()
      })
      expect(listened(client.socket)).to.deep.equal(['message', 'error', 'close'])

      const watched = await openDuplex(cleanup, url)
      const pong = onceWithin<[Uint8Array]>(watched.events, 'pong')
      expect(listened(watched.socket)).to.include.members(['ping', 'pong'])
      watched.socket.ping(Buffer.from('ab'))
      expect(Buffer.from((await pong)[0]).toString()).to.equal('ab')

      const pinging = await openDuplex(cleanup, url)
      await withTimeout(pinging.ping(), 2000, 'a pong')
      expect(listened(pinging.socket)).to.include.members(['ping', 'pong'])

      const keptAlive = await openDuplex(cleanup, url, { keepAlive: true })
      expect(listened(keptAlive.socket)).to.include.members(['ping', 'pong'])
    })

    it('never holds more than three event names on a socket from connect() to open and idle', async () => {
      // ws keeps a socket's listeners in a dictionary sized by the most event names it held
      // at once; a fourth name made every idle client connection about 100 bytes bigger.
      const { url } = await startWsServer(cleanup)
      const most = new WeakMap<WebSocket, number>()
      const proto = WebSocket.prototype
      const { on, off } = proto
      const record = (ws: WebSocket): void => {
        most.set(ws, Math.max(most.get(ws) ?? 0, ws.eventNames().length))
      }
      proto.on = function (this: WebSocket, ...args: Parameters<typeof on>) {
        const result = on.apply(this, args)
        record(this)
        return result
      } as typeof on
      proto.off = function (this: WebSocket, ...args: Parameters<typeof off>) {
        const result = off.apply(this, args)
        record(this)
        return result
      } as typeof off
      let client: WsDuplex
      try {
        client = await connect(url)
      } finally {
        proto.on = on
        proto.off = off
      }
      cleanup.add(() => {
        client.destroy()
      })
      expect(client.socket.eventNames()).to.have.members(['message', 'error', 'close'])
      expect(most.get(client.socket)).to.equal(3)
    })

    it('still reports a refused handshake with its status and closes the socket', async () => {
      // While connecting, 'close' is listened for only once the handshake fails.
      const { url } = await startWsServer(cleanup, {
        verifyClient: (_info, done) => done(false, 403)
      })
      const ws = new WebSocket(url)
      const duplex = new WsDuplex(ws)
      const closed = withTimeout(
        new Promise((resolve) => duplex.once('close', resolve)),
        3000,
        "the stream's 'close'"
      )
      const error = await streamError(duplex)
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 403 })
      await closed
      // The engine saw ws's 'close' (closeInfo is set from it) and then let go of the socket.
      expect(duplex.closeInfo).to.include({ code: 1006, wasClean: false })
      expect(ws.eventNames()).to.deep.equal([])
    })
  })
})

/** Reads exactly `length` bytes from a stream (bounded). */
function collectUntil(stream: NodeJS.ReadableStream, length: number, ms = 5000): Promise<Buffer> {
  return withTimeout(
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      let got = 0
      const onData = (chunk: Buffer): void => {
        chunks.push(chunk)
        got += chunk.length
        if (got >= length) {
          stream.off('data', onData)
          stream.off('error', reject)
          resolve(Buffer.concat(chunks))
        }
      }
      stream.on('data', onData)
      stream.on('error', reject)
    }),
    ms,
    `${length} bytes`
  )
}
