import { createServer as createNetServer, connect as netConnect, type AddressInfo } from 'node:net'
import { expect } from 'chai'
import { WebSocket, type WebSocket as WsSocket } from 'ws'
import {
  connect,
  createServer,
  WsDuplex,
  WsDuplexError,
  type ConnectOptions
} from '../lib/index.js'
import {
  acceptKey,
  encodeFrame,
  headerValue,
  Opcode,
  startRawServer,
  type RawServer
} from './helpers/raw-peer.js'
import {
  Cleanup,
  closeAnsweredSlowly,
  patternBytes,
  startWsServer,
  streamError
} from './helpers/servers.js'
import { onceWithin, withTimeout } from './helpers/wait.js'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

type CodedError = Error & { code?: string; closeCode?: number; status?: number }

/** The error `p` rejects with, bounded by `ms`; fails the test if `p` resolves. */
async function rejectionOf(p: Promise<unknown>, ms = 3000): Promise<CodedError> {
  try {
    const value = await withTimeout(p, ms, 'the promise to settle')
    if (value instanceof WsDuplex) value.destroy()
  } catch (error) {
    return error as CodedError
  }
  throw new Error('expected a rejection, got a resolution')
}

/** connect(), with the resulting duplex destroyed in cleanup. */
async function open(url: string | URL, options?: ConnectOptions): Promise<WsDuplex> {
  const duplex = await withTimeout(connect(url, options), 3000, 'connect()')
  cleanup.add(() => {
    duplex.destroy()
  })
  return duplex
}

/** Resolves with exactly the next `length` bytes read from `stream`. */
function readBytes(stream: WsDuplex, length: number, ms = 3000): Promise<Buffer> {
  const chunks: Buffer[] = []
  let got = 0
  const done = new Promise<Buffer>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      got += chunk.length
      if (got >= length) {
        finish()
        resolve(Buffer.concat(chunks))
      }
    }
    const onError = (error: Error): void => {
      finish()
      reject(error)
    }
    const onEnd = (): void => {
      finish()
      reject(new Error(`the stream ended after ${got} of ${length} bytes`))
    }
    const finish = (): void => {
      stream.off('data', onData)
      stream.off('error', onError)
      stream.off('end', onEnd)
      stream.pause()
    }
    stream.on('data', onData)
    stream.on('error', onError)
    stream.on('end', onEnd)
  })
  return withTimeout(done, ms, `${length} bytes`)
}

async function rawServer(options?: Parameters<typeof startRawServer>[0]): Promise<RawServer> {
  const raw = await startRawServer(options)
  cleanup.add(() => raw.close())
  return raw
}

/** A ws server whose sockets echo every message back. */
async function echoWsServer(
  options?: Parameters<typeof startWsServer>[1]
): Promise<{ url: string; nextSocket(ms?: number): Promise<WsSocket> }> {
  const server = await startWsServer(cleanup, options)
  server.wss.on('connection', (ws) =>
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  )
  return server
}

/** A port nothing listens on: one the OS just handed out and that was freed again. */
async function freedPort(): Promise<number> {
  const server = createNetServer()
  server.listen(0, '127.0.0.1')
  await onceWithin(server, 'listening')
  const { port } = server.address() as AddressInfo
  await withTimeout(
    new Promise<void>((resolve) => server.close(() => resolve())),
    2000,
    'the probe server to close'
  )
  return port
}

const MiB = 1024 * 1024

describe('connect', () => {
  it('resolves with an open WsDuplex whose bytes reach a createServer() server and come back', async () => {
    const server = await createServer({ host: '127.0.0.1', port: 0 }, (duplex) => {
      duplex.on('error', () => {})
      duplex.pipe(duplex)
    })
    cleanup.add(() => server.close())
    const { port } = server.address() as AddressInfo
    const duplex = await open(`ws://127.0.0.1:${port}`)
    expect(duplex).to.be.instanceOf(WsDuplex)
    expect(duplex.socket.readyState).to.equal(WebSocket.OPEN)
    const payload = patternBytes(100_000, 7)
    const echoed = readBytes(duplex, payload.length)
    duplex.write(payload)
    expect((await echoed).equals(payload)).to.equal(true)
  })

  it('emits the events of frames that came with the handshake after it resolves', async () => {
    // One TCP write: the 101, then a ping, a pong, a text frame and bytes, all read together.
    const frames = Buffer.concat([
      encodeFrame({ opcode: Opcode.Ping, payload: Buffer.from('early ping') }),
      encodeFrame({ opcode: Opcode.Pong, payload: Buffer.from('early pong') }),
      encodeFrame({ opcode: Opcode.Text, payload: Buffer.from('early text') }),
      encodeFrame({ opcode: Opcode.Binary, payload: Buffer.from('bytes') })
    ])
    const raw = await rawServer({
      respond: (head) =>
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${acceptKey(headerValue(head, 'sec-websocket-key') ?? '')}\r\n\r\n` +
        frames.toString('latin1')
    })
    const duplex = await open(raw.url, { text: 'ignore' })
    const seen: string[] = []
    duplex.events.on('ping', (data) => seen.push(`ping ${Buffer.from(data).toString()}`))
    duplex.events.on('pong', (data) => seen.push(`pong ${Buffer.from(data).toString()}`))
    duplex.events.on('warning', (error) => seen.push(`warning ${error.code}`))
    const [chunk] = await onceWithin<[Buffer]>(duplex, 'data')
    expect(chunk.toString()).to.equal('bytes')
    expect(seen).to.deep.equal(['ping early ping', 'pong early pong', 'warning ERR_TEXT_FRAME'])
  })

  it('rejects with ERR_CONNECT_FAILED when the connection is refused', async () => {
    const port = await freedPort()
    const error = await rejectionOf(connect(`ws://127.0.0.1:${port}`))
    expect(error).to.be.instanceOf(WsDuplexError)
    expect(error.code).to.equal('ERR_CONNECT_FAILED')
  })

  it('rejects with ERR_HANDSHAKE_REJECTED and the status when the server answers 403', async () => {
    const raw = await rawServer({
      respond: () => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope'
    })
    const error = await rejectionOf(connect(raw.url))
    expect(error).to.be.instanceOf(WsDuplexError)
    expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 403 })
    const peer = await raw.nextPeer()
    await peer.tcpClosed(2000)
  })

  describe('option timeout', () => {
    it('rejects with ERR_CONNECT_TIMEOUT and closes the TCP connection when the upgrade is never answered', async () => {
      const raw = await rawServer({ noUpgradeResponse: true })
      const started = Date.now()
      const error = await rejectionOf(connect(raw.url, { timeout: 200 }))
      expect(error).to.be.instanceOf(WsDuplexError)
      expect(error.code).to.equal('ERR_CONNECT_TIMEOUT')
      expect(Date.now() - started).to.be.at.least(150)
      const peer = await raw.nextPeer()
      await peer.tcpClosed(2000)
    })

    it('rejects a negative timeout with a RangeError naming it', async () => {
      const error = await rejectionOf(connect('ws://127.0.0.1:1', { timeout: -1 }))
      expect(error).to.be.instanceOf(RangeError)
      expect(error.message).to.match(/`timeout`/)
    })
  })

  describe('option signal', () => {
    it('rejects with ERR_ABORTED and closes the socket when aborted mid-handshake', async () => {
      const raw = await rawServer({ noUpgradeResponse: true })
      const controller = new AbortController()
      const attempt = rejectionOf(connect(raw.url, { signal: controller.signal }))
      const peer = await raw.nextPeer()
      controller.abort()
      const error = await attempt
      expect(error).to.be.instanceOf(WsDuplexError)
      expect(error.code).to.equal('ERR_ABORTED')
      await peer.tcpClosed(2000)
    })

    it('rejects with ERR_ABORTED without connecting when the signal is already aborted', async () => {
      const probe = createNetServer()
      const accepted: number[] = []
      probe.on('connection', (socket) => {
        accepted.push(socket.remotePort ?? -1)
        socket.destroy()
      })
      probe.listen(0, '127.0.0.1')
      await onceWithin(probe, 'listening')
      cleanup.add(() => new Promise<void>((resolve) => probe.close(() => resolve())))
      const { port } = probe.address() as AddressInfo

      const reason = new Error('stop')
      const error = await rejectionOf(
        connect(`ws://127.0.0.1:${port}`, { signal: AbortSignal.abort(reason) })
      )
      expect(error).to.be.instanceOf(WsDuplexError)
      expect(error.code).to.equal('ERR_ABORTED')
      expect(error.cause).to.equal(reason)

      // Had connect() opened a socket, the server would accept it before this later one.
      const acceptedProbe = onceWithin(probe, 'connection')
      const socket = netConnect(port, '127.0.0.1')
      socket.on('error', () => {})
      cleanup.add(() => {
        socket.destroy()
      })
      await Promise.all([onceWithin(socket, 'connect'), acceptedProbe])
      expect(accepted).to.deep.equal([socket.localPort])
    })

    it('has no effect once connect() has resolved', async () => {
      const { url } = await echoWsServer()
      const controller = new AbortController()
      const duplex = await open(url, { signal: controller.signal })
      const errors: Error[] = []
      duplex.on('error', (error: Error) => errors.push(error))
      controller.abort()
      const echoed = readBytes(duplex, 5)
      duplex.write(Buffer.from('still'))
      expect((await echoed).toString()).to.equal('still')
      expect(errors).to.deep.equal([])
      expect(duplex.closeInfo).to.equal(undefined)
    })

    it('rejects a signal that is not an AbortSignal with a TypeError naming it', async () => {
      const error = await rejectionOf(
        connect('ws://127.0.0.1:1', { signal: {} as unknown as AbortSignal })
      )
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.match(/`signal`/)
    })

    for (const [name, meant] of [
      ['keepalive', 'keepAlive'],
      ['closetimeout', 'closeTimeout'],
      ['MaxPayload', 'maxPayload'],
      ['Protocols', 'protocols']
    ] as const) {
      it(`rejects the miscased \`${name}\`, which ws would drop unseen, naming \`${meant}\``, async () => {
        const error = await rejectionOf(
          connect('ws://127.0.0.1:1', { [name]: 1 } as unknown as ConnectOptions)
        )
        expect(error).to.be.instanceOf(TypeError)
        expect(error.message).to.equal(
          `Unknown option \`${name}\` for connect(); did you mean \`${meant}\`?`
        )
      })
    }
  })

  describe('option headers', () => {
    it('sends the headers with the upgrade request', async () => {
      const raw = await rawServer()
      await open(raw.url, { headers: { 'X-Ws-Duplex-Test': 'present' } })
      const peer = await raw.nextPeer()
      expect(headerValue(peer.httpHead, 'x-ws-duplex-test')).to.equal('present')
    })
  })

  describe('option protocols', () => {
    it('offers the subprotocols and exposes the one the server chose', async () => {
      const offered: string[] = []
      const { url, nextSocket } = await startWsServer(cleanup, {
        handleProtocols: (protocols) => {
          offered.push(...protocols)
          return 'beta'
        }
      })
      const duplex = await open(url, { protocols: ['alpha', 'beta'] })
      expect(offered).to.deep.equal(['alpha', 'beta'])
      expect(duplex.socket.protocol).to.equal('beta')
      expect((await nextSocket()).protocol).to.equal('beta')
    })

    it('rejects with ERR_CONNECT_FAILED when the server chooses none of them', async () => {
      // RFC 6455 §4.1 would let it open with no subprotocol; ws and the WHATWG standard fail it.
      const raw = await rawServer()
      const error = await rejectionOf(connect(raw.url, { protocols: ['alpha'] }))
      expect(error).to.include({ code: 'ERR_CONNECT_FAILED' })
      expect(error.message).to.match(/no subprotocol/)
    })

    for (const protocols of ['a b', ['a', 'a'], [1], '']) {
      it(`rejects ${JSON.stringify(protocols)} with a TypeError naming it`, async () => {
        const error = await rejectionOf(
          connect('ws://127.0.0.1:1', { protocols: protocols as string[] })
        )
        expect(error).to.be.instanceOf(TypeError)
        expect(error.message).to.match(/`protocols`/)
      })
    }
  })

  describe('option handshakeTimeout', () => {
    it("accepts 0 (ws's no timeout; `timeout` still bounds the attempt)", async () => {
      const { url } = await startWsServer(cleanup)
      await open(url, { handshakeTimeout: 0 })
    })

    it('rejects a negative value with a RangeError naming it', async () => {
      const error = await rejectionOf(connect('ws://127.0.0.1:1', { handshakeTimeout: -1 }))
      expect(error).to.be.instanceOf(RangeError)
      expect(error.message).to.match(/`handshakeTimeout`/)
    })
  })

  describe('option maxPayload', () => {
    it('accepts a message of exactly 1 MiB by default', async () => {
      const { url, nextSocket } = await startWsServer(cleanup)
      const duplex = await open(url)
      const payload = patternBytes(MiB, 3)
      const received = readBytes(duplex, payload.length)
      ;(await nextSocket()).send(payload)
      expect((await received).equals(payload)).to.equal(true)
    })

    it('defaults to 1 MiB: a larger message errors with ERR_PAYLOAD_TOO_LARGE and close code 1009', async () => {
      const { url, nextSocket } = await startWsServer(cleanup)
      const duplex = await open(url)
      const socket = await nextSocket()
      const serverClose = onceWithin<[number, Buffer]>(socket, 'close', 3000)
      duplex.resume()
      const failed = streamError(duplex)
      socket.send(patternBytes(MiB + 1))
      const error = await failed
      expect(error).to.be.instanceOf(WsDuplexError)
      expect(error).to.include({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 1009 })
      expect((await serverClose)[0]).to.equal(1009)
    })

    it('can be raised', async () => {
      const { url, nextSocket } = await startWsServer(cleanup)
      const duplex = await open(url, { maxPayload: 2 * MiB })
      const payload = patternBytes(MiB + 1, 5)
      const received = readBytes(duplex, payload.length)
      ;(await nextSocket()).send(payload)
      expect((await received).equals(payload)).to.equal(true)
    })

    it('keeps the 1 MiB limit when given undefined', async () => {
      const { url, nextSocket } = await startWsServer(cleanup)
      const duplex = await open(url, { maxPayload: undefined })
      duplex.resume()
      const failed = streamError(duplex)
      ;(await nextSocket()).send(patternBytes(MiB + 1))
      expect(await failed).to.include({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 1009 })
    })

    // ws reads 0, a negative or a non-number as no limit at all.
    for (const maxPayload of [0, -1, 2 ** 31, Number.NaN, '1048576']) {
      it(`rejects ${String(maxPayload)} (${typeof maxPayload}) naming it`, async () => {
        const error = await rejectionOf(
          connect('ws://127.0.0.1:1', { maxPayload: maxPayload as number })
        )
        expect(error.name).to.match(/^(TypeError|RangeError)$/)
        expect(error.message).to.match(/`maxPayload`/)
      })
    }
  })

  describe('option perMessageDeflate', () => {
    it('is off by default even when the server offers it', async () => {
      const { url } = await echoWsServer({ perMessageDeflate: true })
      const duplex = await open(url)
      expect(duplex.socket.extensions).to.equal('')
    })

    it('negotiates permessage-deflate when true, and bytes still round-trip', async () => {
      const { url } = await echoWsServer({ perMessageDeflate: true })
      const duplex = await open(url, { perMessageDeflate: true })
      expect(duplex.socket.extensions).to.include('permessage-deflate')
      const payload = Buffer.concat([Buffer.alloc(20_000, 'a'), patternBytes(20_000, 9)])
      const echoed = readBytes(duplex, payload.length)
      duplex.write(payload)
      expect((await echoed).equals(payload)).to.equal(true)
    })
  })

  describe('option closeTimeout', () => {
    it('at its largest still waits for a slow peer to answer the close', async () => {
      const raw = await rawServer()
      const duplex = await open(raw.url, { closeTimeout: 2 ** 31 - 1 })
      const peer = await raw.nextPeer()
      const { closeInfo, warnings, firstFrame } = await closeAnsweredSlowly(duplex, peer)
      expect(firstFrame).to.equal(Opcode.Close)
      expect(closeInfo).to.deep.include({ code: 1000, wasClean: true })
      expect(warnings).to.not.include('TimeoutOverflowWarning')
    })
  })

  describe('options of the wrong type', () => {
    const bad: [string, ConnectOptions][] = [
      ['maxFrameSize', { maxFrameSize: 'x' as unknown as number }],
      ['perMessageDeflate', { perMessageDeflate: 'yes' as unknown as boolean }]
    ]
    for (const [name, options] of bad) {
      it(`rejects a string \`${name}\` with a TypeError naming it`, async () => {
        const error = await rejectionOf(connect('ws://127.0.0.1:1', options))
        expect(error).to.be.instanceOf(TypeError)
        expect(error.message).to.include(`\`${name}\``)
      })
    }
  })

  describe('options object', () => {
    it('is not modified', async () => {
      const { url } = await startWsServer(cleanup)
      const options: ConnectOptions = {
        headers: { 'X-One': '1' },
        protocols: ['p1'],
        timeout: 2000,
        maxPayload: 2 * MiB,
        maxFrameSize: 1024,
        closeTimeout: 1000,
        keepAlive: { interval: 60_000 },
        perMessageDeflate: false
      }
      const before = structuredClone(options)
      await open(url, options)
      expect(options).to.deep.equal(before)
      expect(Object.isFrozen(options)).to.equal(false)
    })
  })

  describe('url', () => {
    it('accepts a URL object', async () => {
      const { url } = await startWsServer(cleanup)
      const duplex = await open(new URL(url))
      expect(duplex.socket.url).to.equal(`${url}/`)
    })

    for (const url of ['not a url', 'ftp://127.0.0.1/']) {
      it(`rejects ${JSON.stringify(url)} with a TypeError`, async () => {
        const error = await rejectionOf(connect(url))
        expect(error).to.be.instanceOf(TypeError)
      })
    }
  })
})
