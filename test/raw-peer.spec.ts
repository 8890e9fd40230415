import { expect } from 'chai'
import fc from 'fast-check'
import type { IncomingMessage } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { Readable } from 'node:stream'
import { WebSocket, WebSocketServer, type ClientOptions, type ServerOptions } from 'ws'
import {
  acceptKey,
  closePayload,
  encodeFrame,
  FrameParser,
  headerValue,
  Opcode,
  parseClose,
  rawConnect,
  startRawServer,
  type Frame,
  type RawPeer,
  type RawServer,
  type RawServerOptions
} from './helpers/raw-peer.js'
import { collect, onceWithin, withTimeout } from './helpers/wait.js'

type Cleanup = () => Promise<void> | void

function bytes(length: number, seed = 7): Buffer {
  const out = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff
  return out
}

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex')
}

// Resolves once `n` more bytes have been read from `socket` (the RawPeer's own 'data' listener
// runs first, so by then their frames are queued). Bounded, and removes its listener either way.
function bytesArrive(socket: Socket, n: number, ms = 2000): Promise<void> {
  let seen = 0
  let onData: (chunk: Buffer) => void = () => undefined
  const arrived = new Promise<void>((resolve) => {
    onData = (chunk) => {
      seen += chunk.length
      if (seen >= n) resolve()
    }
    socket.on('data', onData)
  })
  return withTimeout(arrived, ms, `${n} bytes`).finally(() => socket.off('data', onData))
}

async function expectRejection(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  let error: unknown
  try {
    await p
  } catch (err) {
    error = err
  }
  expect(error).to.be.instanceOf(Error)
  expect((error as Error).message).to.match(pattern)
}

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
}

describe('RawPeer', () => {
  const cleanups: Cleanup[] = []

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  async function wsServer(
    opts: ServerOptions = {}
  ): Promise<{ wss: WebSocketServer; url: string }> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...opts })
    cleanups.push(async () => {
      for (const client of wss.clients) client.terminate()
      await withTimeout(
        new Promise<void>((resolve) => wss.close(() => resolve())),
        2000,
        'the ws server to close'
      )
    })
    await onceWithin(wss, 'listening')
    const { port } = wss.address() as AddressInfo
    return { wss, url: `ws://127.0.0.1:${port}` }
  }

  async function echoServer(): Promise<{ wss: WebSocketServer; url: string }> {
    const server = await wsServer()
    server.wss.on('connection', (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
    })
    return server
  }

  async function rawServer(opts?: RawServerOptions): Promise<RawServer> {
    const server = await startRawServer(opts)
    cleanups.push(() => server.close())
    return server
  }

  async function rawClient(url: string, opts?: Parameters<typeof rawConnect>[1]): Promise<RawPeer> {
    const peer = await rawConnect(url, opts)
    cleanups.push(() => void peer.socket.destroy())
    return peer
  }

  // A raw client connected to a ws server, and the server's end of that connection.
  async function rawClientOf(server: {
    wss: WebSocketServer
    url: string
  }): Promise<{ peer: RawPeer; ws: WebSocket; req: IncomingMessage }> {
    // Subscribe before connecting: ws emits 'connection' as soon as it writes the 101.
    const connection = onceWithin<[WebSocket, IncomingMessage]>(server.wss, 'connection')
    const peer = await rawClient(server.url)
    const [ws, req] = await connection
    return { peer, ws, req }
  }

  function wsClient(url: string, protocols?: string | string[], opts?: ClientOptions): WebSocket {
    const client = new WebSocket(url, protocols, opts)
    cleanups.push(() => client.terminate())
    return client
  }

  // A ws client connected to a raw server, and the raw server's end of that connection.
  async function wsClientOf(
    server: RawServer,
    protocols?: string | string[]
  ): Promise<{ client: WebSocket; peer: RawPeer }> {
    const client = wsClient(server.url, protocols)
    await onceWithin(client, 'open')
    return { client, peer: await server.nextPeer() }
  }

  describe('encodeFrame()', () => {
    it('encodes the RFC 6455 §5.7 examples byte for byte', () => {
      const hello = Buffer.from('Hello')
      const key = hex('37fa213d')
      expect(encodeFrame({ opcode: Opcode.Text, payload: hello })).to.deep.equal(
        hex('81 05 48 65 6c 6c 6f')
      )
      expect(encodeFrame({ opcode: Opcode.Text, payload: hello, mask: key })).to.deep.equal(
        hex('81 85 37 fa 21 3d 7f 9f 4d 51 58')
      )
      expect(
        encodeFrame({ opcode: Opcode.Text, payload: Buffer.from('Hel'), fin: false })
      ).to.deep.equal(hex('01 03 48 65 6c'))
      expect(
        encodeFrame({ opcode: Opcode.Continuation, payload: Buffer.from('lo') })
      ).to.deep.equal(hex('80 02 6c 6f'))
      expect(encodeFrame({ opcode: Opcode.Ping, payload: hello })).to.deep.equal(
        hex('89 05 48 65 6c 6c 6f')
      )
      expect(encodeFrame({ opcode: Opcode.Pong, payload: hello, mask: key })).to.deep.equal(
        hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58')
      )
      const b256 = encodeFrame({ opcode: Opcode.Binary, payload: bytes(256) })
      expect(b256.subarray(0, 4)).to.deep.equal(hex('82 7e 0100'))
      expect(b256.subarray(4)).to.deep.equal(bytes(256))
      const b64k = encodeFrame({ opcode: Opcode.Binary, payload: bytes(65536) })
      expect(b64k.subarray(0, 10)).to.deep.equal(hex('82 7f 0000000000010000'))
      expect(b64k.length).to.equal(10 + 65536)
    })

    it('forces the 16- and 64-bit extended lengths for small payloads', () => {
      const payload = Buffer.from('abc')
      expect(encodeFrame({ opcode: Opcode.Binary, payload, length: '16' })).to.deep.equal(
        hex('82 7e 0003 616263')
      )
      expect(encodeFrame({ opcode: Opcode.Binary, payload, length: '64' })).to.deep.equal(
        hex('82 7f 0000000000000003 616263')
      )
      expect(encodeFrame({ opcode: Opcode.Binary, length: '64' })).to.deep.equal(
        hex('82 7f 0000000000000000')
      )
    })

    it('sets the FIN and RSV bits as given', () => {
      const frame = encodeFrame({ opcode: Opcode.Binary, fin: false, rsv: 0b100 })
      expect(frame).to.deep.equal(hex('42 00'))
      expect(encodeFrame({ opcode: 0xb, rsv: 0b111 })).to.deep.equal(hex('fb 00'))
    })

    it('masks with a random key when mask is true', () => {
      const payload = bytes(40)
      const frame = encodeFrame({ opcode: Opcode.Binary, payload, mask: true })
      expect(frame.readUInt8(1)).to.equal(0x80 | 40)
      const [parsed] = new FrameParser().push(frame)
      expect(parsed?.masked).to.equal(true)
      expect(parsed?.payload).to.deep.equal(payload)
    })

    it('rejects what a frame header cannot represent', () => {
      expect(() => encodeFrame({ opcode: 16 })).to.throw(RangeError)
      expect(() => encodeFrame({ opcode: 1, rsv: 8 })).to.throw(RangeError)
      expect(() => encodeFrame({ opcode: 1, mask: Buffer.alloc(3) })).to.throw(RangeError)
      expect(() => encodeFrame({ opcode: 2, payload: bytes(70_000), length: '16' })).to.throw(
        RangeError
      )
    })
  })

  describe('FrameParser#push', () => {
    const frames: Frame[] = [
      { fin: true, rsv: 0, opcode: Opcode.Text, masked: false, payload: Buffer.from('Hello') },
      { fin: false, rsv: 0, opcode: Opcode.Binary, masked: true, payload: bytes(125) },
      { fin: true, rsv: 0, opcode: Opcode.Continuation, masked: true, payload: bytes(126) },
      { fin: true, rsv: 0b100, opcode: Opcode.Binary, masked: false, payload: bytes(70_000) },
      { fin: true, rsv: 0, opcode: Opcode.Ping, masked: true, payload: Buffer.alloc(0) },
      { fin: true, rsv: 0, opcode: Opcode.Close, masked: false, payload: closePayload(1000, 'bye') }
    ]
    const wire = Buffer.concat([
      ...frames.map((f) => encodeFrame({ ...f, mask: f.masked })),
      encodeFrame({ opcode: Opcode.Binary, payload: Buffer.from('x'), length: '16' }),
      encodeFrame({ opcode: Opcode.Binary, payload: Buffer.from('y'), length: '64', mask: true })
    ])
    const expected: Frame[] = [
      ...frames,
      { fin: true, rsv: 0, opcode: Opcode.Binary, masked: false, payload: Buffer.from('x') },
      { fin: true, rsv: 0, opcode: Opcode.Binary, masked: true, payload: Buffer.from('y') }
    ]

    it('parses the RFC 6455 §5.7 examples', () => {
      const parsed = new FrameParser().push(
        hex('81 85 37 fa 21 3d 7f 9f 4d 51 58  01 03 48 65 6c  80 02 6c 6f  8a 05 48 65 6c 6c 6f')
      )
      expect(parsed).to.deep.equal([
        { fin: true, rsv: 0, opcode: Opcode.Text, masked: true, payload: Buffer.from('Hello') },
        { fin: false, rsv: 0, opcode: Opcode.Text, masked: false, payload: Buffer.from('Hel') },
        {
          fin: true,
          rsv: 0,
          opcode: Opcode.Continuation,
          masked: false,
          payload: Buffer.from('lo')
        },
        { fin: true, rsv: 0, opcode: Opcode.Pong, masked: false, payload: Buffer.from('Hello') }
      ])
    })

    it('yields the same frames whole and fed one byte at a time', () => {
      expect(new FrameParser().push(wire)).to.deep.equal(expected)
      const parser = new FrameParser()
      const oneByOne: Frame[] = []
      for (let i = 0; i < wire.length; i++) oneByOne.push(...parser.push(wire.subarray(i, i + 1)))
      expect(oneByOne).to.deep.equal(expected)
    })

    it('yields the same frames for any split of the byte stream', () => {
      const frameArb = fc.record({
        opcode: fc.constantFrom(0, 1, 2, 8, 9, 10, 3, 0xf),
        fin: fc.boolean(),
        rsv: fc.integer({ min: 0, max: 7 }),
        masked: fc.boolean(),
        payload: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
        length: fc.constantFrom('auto' as const, '16' as const, '64' as const)
      })
      fc.assert(
        fc.property(
          fc.array(frameArb, { minLength: 1, maxLength: 6 }),
          fc.array(fc.nat(), { maxLength: 20 }),
          (specs, cuts) => {
            const stream = Buffer.concat(specs.map((s) => encodeFrame({ ...s, mask: s.masked })))
            const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort(
              (a, b) => a - b
            )
            const parser = new FrameParser()
            const got: Frame[] = []
            let from = 0
            for (const to of [...points, stream.length]) {
              got.push(...parser.push(stream.subarray(from, to)))
              from = to
            }
            expect(got).to.deep.equal(
              specs.map(({ opcode, fin, rsv, masked, payload }) => ({
                fin,
                rsv,
                opcode,
                masked,
                payload
              }))
            )
          }
        ),
        { numRuns: 200 }
      )
    })

    it('leaves the chunks it is given untouched when unmasking', () => {
      const frame = encodeFrame({ opcode: Opcode.Binary, payload: bytes(50), mask: true })
      const copy = Buffer.from(frame)
      new FrameParser().push(frame)
      expect(frame).to.deep.equal(copy)
    })

    it('throws on a 64-bit length beyond 2^53 - 1', () => {
      const parser = new FrameParser()
      expect(() => parser.push(hex('82 7f 8000000000000000'))).to.throw(/§5\.2/)
    })
  })

  describe('closePayload() and parseClose()', () => {
    it('encodes a big-endian code followed by the UTF-8 reason (§5.5.1)', () => {
      expect(closePayload(1000, 'ok')).to.deep.equal(hex('03e8 6f6b'))
      expect(closePayload(4001, Buffer.from([0xff]))).to.deep.equal(hex('0fa1 ff'))
      expect(closePayload()).to.deep.equal(Buffer.alloc(0))
      expect(() => closePayload(undefined, 'why')).to.throw(/§5\.5\.1/)
    })

    it('parses what closePayload encodes', () => {
      expect(parseClose(closePayload(1001, 'é gone'))).to.deep.equal({
        code: 1001,
        reason: 'é gone'
      })
      expect(parseClose(Buffer.alloc(0))).to.deep.equal({ code: undefined, reason: '' })
    })

    it('throws on a 1-byte body or a reason that is not UTF-8', () => {
      expect(() => parseClose(hex('03'))).to.throw(/1-byte/)
      expect(() => parseClose(hex('03e8 ff'))).to.throw(/UTF-8/)
    })
  })

  describe('rawConnect()', () => {
    it('completes the handshake with a ws server and exchanges binary frames', async () => {
      const server = await echoServer()
      const { peer, ws, req } = await rawClientOf(server)
      expect(req.headers['sec-websocket-version']).to.equal('13')
      expect(headerValue(peer.httpHead, 'sec-websocket-accept')).to.be.a('string')

      const message = onceWithin<[Buffer, boolean]>(ws, 'message')
      peer.sendBinary(Buffer.from([1, 2, 3]))
      const [data, isBinary] = await message
      expect(data).to.deep.equal(Buffer.from([1, 2, 3]))
      expect(isBinary).to.equal(true)

      // §5.1: a server never masks.
      expect(await peer.nextFrame()).to.deep.equal({
        fin: true,
        rsv: 0,
        opcode: Opcode.Binary,
        masked: false,
        payload: Buffer.from([1, 2, 3])
      })
    })

    it('exchanges a 70,000-byte payload with a 64-bit length split across TCP reads', async () => {
      const server = await echoServer()
      const { peer, ws } = await rawClientOf(server)
      const chunks: Buffer[] = []
      const onData = (chunk: Buffer): void => void chunks.push(chunk)
      peer.socket.on('data', onData)
      cleanups.push(() => void peer.socket.off('data', onData))

      const payload = bytes(70_000)
      const message = onceWithin<[Buffer, boolean]>(ws, 'message')
      peer.sendBinary(payload)
      const [data] = await message
      expect(data).to.deep.equal(payload)

      const frame = await peer.nextFrame()
      expect(frame.opcode).to.equal(Opcode.Binary)
      expect(frame.payload).to.deep.equal(payload)
      // §5.2: 127 then a 64-bit length, exactly what ws wrote.
      const received = Buffer.concat(chunks)
      expect(received.subarray(0, 10)).to.deep.equal(hex('82 7f 0000000000011170'))
      expect(received.length).to.equal(10 + 70_000)
      // libuv reads at most 64 KiB at a time, so the frame reached the parser in several chunks.
      expect(chunks.length).to.be.greaterThan(1)
    })

    it('sends a frame written in pieces that split its header and payload', async () => {
      const server = await echoServer()
      const { peer, ws } = await rawClientOf(server)
      const payload = bytes(70_000, 3)
      const wire = encodeFrame({ opcode: Opcode.Binary, payload, mask: true })
      const message = onceWithin<[Buffer, boolean]>(ws, 'message')
      for (const [from, to] of [
        [0, 1],
        [1, 5],
        [5, 13],
        [13, 30_000],
        [30_000, wire.length]
      ] as const) {
        peer.writeRaw(wire.subarray(from, to))
      }
      expect((await message)[0]).to.deep.equal(payload)
      expect((await peer.nextFrame()).payload).to.deep.equal(payload)
    })

    it('offers a subprotocol and sends extra headers', async () => {
      const server = await wsServer({
        handleProtocols: (protocols) => (protocols.has('b') ? 'b' : false)
      })
      const connection = onceWithin<[WebSocket, IncomingMessage]>(server.wss, 'connection')
      const peer = await rawClient(server.url, { protocol: 'a, b', headers: { 'X-Test': 'yes' } })
      const [ws, req] = await connection
      expect(req.headers['x-test']).to.equal('yes')
      expect(ws.protocol).to.equal('b')
      expect(headerValue(peer.httpHead, 'Sec-WebSocket-Protocol')).to.equal('b')
    })

    it('keeps frame bytes that arrive in the same TCP chunk as the 101', async () => {
      const early = encodeFrame({ opcode: Opcode.Binary, payload: Buffer.from('early') })
      const server = await rawServer({
        respond: (head) =>
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${acceptKey(headerValue(head, 'sec-websocket-key') ?? '')}\r\n\r\n` +
          early.toString('latin1')
      })
      const peer = await rawClient(server.url)
      const frame = await peer.nextFrame()
      expect(frame.payload.toString()).to.equal('early')
      expect(frame.masked).to.equal(false)
    })

    it('rejects a wrong Sec-WebSocket-Accept (§4.2.2)', async () => {
      const server = await rawServer({
        respond: () =>
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${acceptKey('not the key')}\r\n\r\n`
      })
      await expectRejection(rawConnect(server.url), /Sec-WebSocket-Accept/)
      await (await server.nextPeer()).tcpClosed()
    })

    it('rejects a response that is not a 101', async () => {
      const server = await rawServer({
        respond: () => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
      })
      await expectRejection(rawConnect(server.url), /403 Forbidden/)
    })

    it('refuses addresses other than loopback', async () => {
      await expectRejection(rawConnect('ws://192.0.2.1:80'), /loopback/)
      await expectRejection(rawConnect('wss://127.0.0.1:80'), /ws:\/\/ only/)
    })
  })

  describe('startRawServer()', () => {
    it('answers a ws client, which receives the frames the raw server sends', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      expect(headerValue(peer.httpHead, 'upgrade')).to.equal('websocket')

      let message = onceWithin<[Buffer, boolean]>(client, 'message')
      peer.sendBinary(Buffer.from('bin'))
      expect(await message).to.deep.equal([Buffer.from('bin'), true])

      message = onceWithin<[Buffer, boolean]>(client, 'message')
      peer.sendText('text ✓')
      const [text, isBinary] = await message
      expect(text.toString('utf8')).to.equal('text ✓')
      expect(isBinary).to.equal(false)

      const big = bytes(70_000)
      message = onceWithin<[Buffer, boolean]>(client, 'message')
      peer.sendBinary(big)
      expect((await message)[0]).to.deep.equal(big)
    })

    it("parses the ws client's masked frames (§5.3)", async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      const big = bytes(70_000, 11)
      client.send(Buffer.from('small'))
      client.send('text')
      client.send(big)
      expect(await peer.nextFrame()).to.deep.equal({
        fin: true,
        rsv: 0,
        opcode: Opcode.Binary,
        masked: true,
        payload: Buffer.from('small')
      })
      const text = await peer.nextFrame()
      expect([text.opcode, text.masked, text.payload.toString()]).to.deep.equal([
        Opcode.Text,
        true,
        'text'
      ])
      const frame = await peer.nextFrame()
      expect([frame.opcode, frame.masked]).to.deep.equal([Opcode.Binary, true])
      expect(frame.payload).to.deep.equal(big)
    })

    it('answers with the configured subprotocol', async () => {
      const server = await rawServer({ protocol: 'chat' })
      const { client, peer } = await wsClientOf(server, 'chat')
      expect(client.protocol).to.equal('chat')
      expect(headerValue(peer.httpHead, 'sec-websocket-protocol')).to.equal('chat')
    })

    it('keeps frame bytes that arrive in the same TCP chunk as the request', async () => {
      const server = await rawServer()
      const socket = connect({ host: '127.0.0.1', port: server.port })
      cleanups.push(() => void socket.destroy())
      const request =
        'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'
      const frame = encodeFrame({
        opcode: Opcode.Binary,
        payload: Buffer.from('eager'),
        mask: true
      })
      socket.write(Buffer.concat([Buffer.from(request, 'latin1'), frame]))
      const response = onceWithin<[Buffer]>(socket, 'data')
      const peer = await server.nextPeer()
      expect((await peer.nextFrame()).payload.toString()).to.equal('eager')
      // §4.2.2: the RFC's own example key and accept value.
      const [head] = await response
      expect(head.toString('latin1')).to.include(
        'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n'
      )
    })

    it('sends a custom response instead of the 101', async () => {
      const server = await rawServer({
        respond: () => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
      })
      const client = wsClient(server.url)
      const [error] = await onceWithin<[Error]>(client, 'error')
      expect(error.message).to.match(/Unexpected server response: 403/)
      await (await server.nextPeer()).tcpClosed()
    })

    it('never answers when noUpgradeResponse is set', async () => {
      const server = await rawServer({ noUpgradeResponse: true })
      const client = wsClient(server.url, undefined, { handshakeTimeout: 100 })
      const failed = onceWithin<[Error]>(client, 'error')
      const peer = await server.nextPeer()
      expect(peer.httpHead).to.match(/^GET \/ HTTP\/1\.1\r\n/)
      const [error] = await failed
      expect(error.message).to.match(/handshake has timed out/)
      await peer.tcpClosed()
    })

    it('destroys its sockets on close()', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      const closed = onceWithin<[number, Buffer]>(client, 'close')
      await server.close()
      await peer.tcpClosed()
      expect((await closed)[0]).to.equal(1006)
      await expectRejection(server.nextPeer(), /closed/)
    })
  })

  describe('#nextFrame', () => {
    it('queues frames that arrive while nobody waits', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      // Three masked 1-byte frames: 2 + 4 + 1 bytes each.
      const arrived = bytesArrive(peer.socket, 21)
      for (const b of ['a', 'b', 'c']) client.send(Buffer.from(b))
      await arrived
      const payloads: string[] = []
      for (let i = 0; i < 3; i++) payloads.push((await peer.nextFrame()).payload.toString())
      expect(payloads).to.deep.equal(['a', 'b', 'c'])
    })

    it('hands frames to concurrent waiters in order', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      const waits = [peer.nextFrame(), peer.nextFrame()]
      client.send(Buffer.from('1'))
      client.send(Buffer.from('2'))
      const frames = await Promise.all(waits)
      expect(frames.map((f) => f.payload.toString())).to.deep.equal(['1', '2'])
    })

    it('rejects when no frame arrives within the bound, and loses no later frame', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      await expectRejection(peer.nextFrame(50), /^timed out after 50 ms waiting for a frame/)
      client.send(Buffer.from('late'))
      expect((await peer.nextFrame()).payload.toString()).to.equal('late')
    })

    it('rejects once TCP has closed and no frame is queued', async () => {
      const server = await echoServer()
      const { peer, ws } = await rawClientOf(server)
      ws.terminate()
      await peer.tcpClosed()
      await expectRejection(peer.nextFrame(), /TCP connection/)
    })
  })

  describe('#sendPing', () => {
    it('gets the pong a ws server answers with the same payload (§5.5.3)', async () => {
      const server = await wsServer()
      const { peer, ws } = await rawClientOf(server)
      const ping = onceWithin<[Buffer]>(ws, 'ping')
      peer.sendPing('are you there')
      expect((await ping)[0].toString()).to.equal('are you there')
      const pong = await peer.nextFrame()
      expect([pong.opcode, pong.payload.toString()]).to.deep.equal([Opcode.Pong, 'are you there'])
    })
  })

  describe('#sendPong', () => {
    it('delivers an unsolicited pong to a ws server', async () => {
      const server = await wsServer()
      const { peer, ws } = await rawClientOf(server)
      const pong = onceWithin<[Buffer]>(ws, 'pong')
      peer.sendPong(Buffer.from([9, 9]))
      expect((await pong)[0]).to.deep.equal(Buffer.from([9, 9]))
    })
  })

  describe('#sendText', () => {
    it('delivers a text message to a ws server', async () => {
      const server = await wsServer()
      const { peer, ws } = await rawClientOf(server)
      const message = onceWithin<[Buffer, boolean]>(ws, 'message')
      peer.sendText('héllo')
      const [data, isBinary] = await message
      expect([data.toString('utf8'), isBinary]).to.deep.equal(['héllo', false])
    })
  })

  describe('#sendClose', () => {
    it('round-trips a close code and reason with a ws server (§5.5.1)', async () => {
      const server = await wsServer()
      const { peer, ws } = await rawClientOf(server)
      const closed = onceWithin<[number, Buffer]>(ws, 'close')
      peer.sendClose(4001, 'going away now')
      const result = await peer.readUntilClose()
      // ws echoes the code it received (§5.5.1: "typically echoes the status code").
      expect(result.close?.code).to.equal(4001)
      expect(result.frames).to.have.length(1)
      expect(result.frames[0]?.masked).to.equal(false)
      await peer.tcpClosed()
      const [code, reason] = await closed
      expect([code, reason.toString()]).to.deep.equal([4001, 'going away now'])
    })

    it('sends an empty close body when no code is given', async () => {
      const server = await wsServer()
      const { peer, ws } = await rawClientOf(server)
      const closed = onceWithin<[number, Buffer]>(ws, 'close')
      peer.sendClose()
      const result = await peer.readUntilClose()
      expect(result.close).to.deep.equal({ code: undefined, reason: '' })
      // §7.4.1: 1005 means no status code was present.
      expect((await closed)[0]).to.equal(1005)
    })
  })

  describe('#readUntilClose', () => {
    it("reads a ws client's close and the data before it", async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      client.send(Buffer.from('ab'), { fin: false })
      client.send(Buffer.from('cd'), { fin: true })
      client.send('xy', { fin: false })
      client.send('z', { fin: true })
      client.ping(Buffer.from('p'))
      client.send(Buffer.from('ef'))
      client.close(1000, 'done')

      const result = await peer.readUntilClose()
      // Binary messages only, including their continuation frames; the text message is left out.
      expect(result.data.toString()).to.equal('abcdef')
      expect(result.frames.map((f) => [f.opcode, f.fin])).to.deep.equal([
        [Opcode.Binary, false],
        [Opcode.Continuation, true],
        [Opcode.Text, false],
        [Opcode.Continuation, true],
        [Opcode.Ping, true],
        [Opcode.Binary, true],
        [Opcode.Close, true]
      ])
      expect(result.frames.every((f) => f.masked)).to.equal(true)
      expect(result.close).to.deep.equal({ code: 1000, reason: 'done' })

      // Complete the closing handshake as a server does: echo, then close TCP first (§7.1.1).
      const closed = onceWithin<[number, Buffer]>(client, 'close')
      peer.sendClose(1000, 'done')
      peer.end()
      const [code, reason] = await closed
      expect([code, reason.toString()]).to.deep.equal([1000, 'done'])
      await peer.tcpClosed()
    })

    it('resolves without a close when TCP closes first', async () => {
      const server = await wsServer()
      const { peer, ws } = await rawClientOf(server)
      ws.send(Buffer.from('last'))
      ws.terminate()
      const result = await peer.readUntilClose()
      expect(result.close).to.equal(undefined)
      expect(result.data.toString()).to.equal('last')
      expect(result.frames).to.have.length(1)
    })

    it('puts the frames back when it times out', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      const arrived = bytesArrive(peer.socket, 2 + 4 + 4)
      client.send(Buffer.from('kept'))
      await arrived
      await expectRejection(
        peer.readUntilClose(50),
        /^timed out after 50 ms waiting for a close frame or TCP close \(got 1 frames, 4 data/
      )
      expect((await peer.nextFrame()).payload.toString()).to.equal('kept')
    })
  })

  describe('#tcpClosed', () => {
    it('rejects when TCP stays open past the bound', async () => {
      const server = await wsServer()
      const { peer } = await rawClientOf(server)
      await expectRejection(peer.tcpClosed(50), /^timed out after 50 ms waiting for the TCP/)
    })
  })

  describe('#end', () => {
    it('sends a FIN, which a ws server reports as an abnormal closure', async () => {
      const server = await wsServer()
      const { peer, ws } = await rawClientOf(server)
      const closed = onceWithin<[number, Buffer]>(ws, 'close')
      peer.end()
      expect((await closed)[0]).to.equal(1006)
      await peer.tcpClosed()
      expect(peer.socketError).to.equal(undefined)
    })
  })

  describe('#reset', () => {
    it('aborts the connection with a RST, which the other end sees as ECONNRESET', async () => {
      const server = await rawServer()
      const client = await rawClient(server.url)
      const peer = await server.nextPeer()
      client.reset()
      await Promise.all([client.tcpClosed(), peer.tcpClosed()])
      expect((peer.socketError as NodeJS.ErrnoException | undefined)?.code).to.equal('ECONNRESET')
    })

    it('makes a ws client report an abnormal closure', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      const closed = onceWithin<[number, Buffer]>(client, 'close')
      peer.reset()
      expect((await closed)[0]).to.equal(1006)
    })
  })

  describe('#pause', () => {
    it('holds incoming frames until resume()', async () => {
      const server = await rawServer()
      const { client, peer } = await wsClientOf(server)
      peer.pause()
      const big = bytes(1024 * 1024)
      client.send(big)
      // The negative half of this test needs a window; it is bounded and short.
      await expectRejection(peer.nextFrame(100), /timed out/)
      expect(peer.socket.isPaused()).to.equal(true)
      peer.resume()
      expect((await peer.nextFrame()).payload).to.deep.equal(big)
    })
  })

  describe('helpers', () => {
    it('leave no timers, listeners or sockets behind', async () => {
      const server = await startRawServer()
      // Counted after the first await: mocha arms its own timeout timer once the test yields.
      const timersBefore = timers()
      const client = await rawConnect(server.url)
      const peer = await server.nextPeer()
      const listeners = ['data', 'end', 'close', 'error'].map((e) => client.socket.listenerCount(e))

      client.sendBinary(Buffer.from('x'))
      expect((await peer.nextFrame()).payload.toString()).to.equal('x')
      await expectRejection(peer.nextFrame(10), /timed out/)
      await expectRejection(client.tcpClosed(10), /timed out/)
      await expectRejection(onceWithin(client.socket, 'never', 10), /timed out/)
      expect(await withTimeout(Promise.resolve(1), 1000, 'nothing')).to.equal(1)
      expect(await collect(Readable.from([Buffer.from('a'), Buffer.from('b')]))).to.deep.equal(
        Buffer.from('ab')
      )
      expect(
        ['data', 'end', 'close', 'error'].map((e) => client.socket.listenerCount(e))
      ).to.deep.equal(listeners)

      client.sendClose(1000)
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
      peer.sendClose(1000)
      expect((await client.readUntilClose()).close?.code).to.equal(1000)
      peer.end()
      await Promise.all([peer.tcpClosed(), client.tcpClosed()])
      await server.close()
      expect(timers()).to.be.at.most(timersBefore)
      expect(client.socket.destroyed && peer.socket.destroyed).to.equal(true)
    })
  })
})
