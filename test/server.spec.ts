import {
  createServer as createHttpServer,
  get as httpGet,
  type IncomingMessage,
  type Server
} from 'node:http'
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { expect } from 'chai'
import { WebSocketServer } from 'ws'
import {
  connect,
  createServer,
  WsDuplex,
  WsDuplexError,
  type CloseInfo,
  type ConnectOptions,
  type ServerOptions,
  type VerifyClientInfo,
  type WsDuplexServer
} from '../lib/index.js'
import { tcpExchange, upgradeRequest } from './helpers/hostile.js'
import { encodeFrame, Opcode, rawConnect } from './helpers/raw-peer.js'
import { Cleanup, closeAnsweredSlowly, streamError } from './helpers/servers.js'
import { collect, onceWithin, withTimeout } from './helpers/wait.js'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

const MiB = 1024 * 1024

type CodedError = Error & { code?: string; status?: number }

interface Started {
  server: WsDuplexServer
  url: string
  /** Server-side duplexes, in the order they connected. */
  accepted: WsDuplex[]
}

/** createServer() on 127.0.0.1, port 0, closed in cleanup. */
async function start(
  options: ServerOptions = {},
  onConnection?: (duplex: WsDuplex, request: IncomingMessage) => void
): Promise<Started> {
  const server = await createServer({ host: '127.0.0.1', port: 0, ...options }, onConnection)
  cleanup.add(() => withTimeout(server.close(), 5000, 'server.close()'))
  const accepted: WsDuplex[] = []
  server.on('connection', (duplex) => accepted.push(duplex))
  const { port } = server.address() as AddressInfo
  return { server, url: `ws://127.0.0.1:${port}`, accepted }
}

/** connect(), with the resulting duplex destroyed in cleanup. */
async function open(url: string, options?: ConnectOptions): Promise<WsDuplex> {
  const duplex = await withTimeout(connect(url, options), 3000, `connect(${url})`)
  cleanup.add(() => {
    duplex.destroy()
  })
  return duplex
}

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

/** The HTTP status (and code) a refused connect() reports. */
async function refusal(url: string, options?: ConnectOptions): Promise<CodedError> {
  const error = await rejectionOf(connect(url, options))
  expect(error).to.be.instanceOf(WsDuplexError)
  return error
}

/** A raw TCP client of `url`'s server, destroyed in cleanup. */
async function tcpClient(url: string, allowHalfOpen = false): Promise<Socket> {
  const socket = netConnect({ port: Number(new URL(url).port), host: '127.0.0.1', allowHalfOpen })
  socket.on('error', () => {})
  cleanup.add(() => {
    socket.destroy()
  })
  await onceWithin(socket, 'connect')
  return socket
}

/** Everything `socket` receives until the peer's FIN, as text. */
async function receivedUntilEnd(socket: Socket, ms = 3000): Promise<string> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  await onceWithin(socket, 'end', ms)
  return Buffer.concat(chunks).toString('latin1')
}

/** A plain HTTP GET on a fresh connection (no keep-alive), bounded. */
function get(
  url: string,
  ms = 3000
): Promise<{ status: number | undefined; headers: IncomingMessage['headers']; body: string }> {
  const done = new Promise<{
    status: number | undefined
    headers: IncomingMessage['headers']
    body: string
  }>((resolve, reject) => {
    const request = httpGet(url, { agent: false, headers: { Connection: 'close' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: Buffer.concat(chunks).toString()
        })
      )
    })
    request.on('error', reject)
    request.setTimeout(ms, () => request.destroy(new Error(`GET ${url} timed out`)))
  })
  return withTimeout(done, ms + 500, `GET ${url}`)
}

describe('createServer', () => {
  it('listens on 127.0.0.1, port 0, and reports the port through address()', async () => {
    const server = await createServer({ host: '127.0.0.1', port: 0 })
    cleanup.add(() => server.close())
    const address = server.address() as AddressInfo
    expect(address.address).to.equal('127.0.0.1')
    expect(address.port).to.be.a('number').and.be.above(0)
  })

  it("emits 'connection' with the duplex and the request, and calls onConnection", async () => {
    const called: [WsDuplex, IncomingMessage][] = []
    const { server, url } = await start({}, (duplex, request) => called.push([duplex, request]))
    const emitted = onceWithin<[WsDuplex, IncomingMessage]>(server, 'connection')
    await open(`${url}/some/path?q=1`, { headers: { 'X-Client': 'one' } })
    const [duplex, request] = await emitted
    expect(duplex).to.be.instanceOf(WsDuplex)
    expect(request.url).to.equal('/some/path?q=1')
    expect(request.headers['x-client']).to.equal('one')
    expect(called).to.have.length(1)
    expect(called[0]?.[0]).to.equal(duplex)
    expect(called[0]?.[1]).to.equal(request)
    expect(server.connections.has(duplex)).to.equal(true)
  })

  it('carries bytes between a connect() client and the server side', async () => {
    const { server, url } = await start()
    const emitted = onceWithin<[WsDuplex]>(server, 'connection')
    const client = await open(url)
    const [serverSide] = await emitted
    const received = collect(serverSide)
    client.end(Buffer.from('hello server'))
    expect((await received).toString()).to.equal('hello server')
  })

  it('lets an exception from a connection listener go uncaught, writing nothing after the 101', async () => {
    const bug = new Error('bug in onConnection')
    const uncaught: unknown[] = []
    let caught: () => void = () => {}
    const wasCaught = new Promise<void>((resolve) => (caught = resolve))
    // Mocha's own listener would fail the test: stand in for it until cleanup.
    const mochaListeners = process.listeners('uncaughtException')
    process.removeAllListeners('uncaughtException')
    const onUncaught = (error: unknown): void => {
      uncaught.push(error)
      caught()
    }
    process.on('uncaughtException', onUncaught)
    cleanup.add(() => {
      process.off('uncaughtException', onUncaught)
      for (const listener of mochaListeners) process.on('uncaughtException', listener)
    })
    const { server, url } = await start({}, () => {
      throw bug
    })
    const client = await open(url)
    await withTimeout(wasCaught, 2000, 'the uncaught exception')
    expect(uncaught).to.deep.equal([bug])
    const [serverSide] = [...server.connections]
    expect(serverSide).to.be.instanceOf(WsDuplex)
    serverSide?.resume()
    client.resume()
    expect(await withTimeout(client.close(), 3000, 'close()')).to.deep.include({
      code: 1000,
      wasClean: true
    })
  })

  describe('async iteration', () => {
    it('yields each connection and ends when the server closes', async () => {
      const { server, url, accepted } = await start()
      const yielded: WsDuplex[] = []
      const loop = (async () => {
        for await (const duplex of server) yielded.push(duplex)
      })()
      const a = await open(url)
      const b = await open(url)
      a.resume()
      b.resume()
      await withTimeout(server.close(), 3000, 'server.close()')
      await withTimeout(loop, 2000, 'the for await loop to end')
      expect(yielded).to.have.length(2)
      expect(yielded).to.deep.equal(accepted)
    })

    /** A server nobody listens to: only `for await` takes its connections. */
    async function unheard(): Promise<{ server: WsDuplexServer; url: string }> {
      const server = await createServer({ host: '127.0.0.1', port: 0 })
      cleanup.add(() => withTimeout(server.close(), 5000, 'server.close()'))
      return { server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` }
    }

    it('holds a connection accepted before the loop; one that fails meanwhile crashes nothing', async () => {
      const { server, url } = await unheard()
      const early = await open(url)
      const doomed = await open(url)
      const [heldEarly, heldDoomed] = [...server.connections] as [WsDuplex, WsDuplex]
      const closed = onceWithin(heldDoomed.events, 'close')
      doomed.on('error', () => {})
      doomed.socket.terminate()
      // Its ERR_ABNORMAL_CLOSURE is emitted with no listener of the user's: no crash.
      await closed
      const iterator = server[Symbol.asyncIterator]()
      const first = await withTimeout(iterator.next(), 2000, 'a held connection')
      expect(first.value).to.equal(heldEarly)
      early.write('hi')
      expect((await onceWithin<[Buffer]>(heldEarly, 'data'))[0].toString()).to.equal('hi')
      await iterator.return?.()
    })

    it('emits the events of frames that came with the handshake to the loop that takes it', async () => {
      const { server } = await unheard()
      const { port } = server.address() as AddressInfo
      const seen: string[] = []
      const got = (async () => {
        for await (const duplex of server) {
          duplex.on('error', () => {}) // the cleanup resets the raw client
          duplex.events.on('ping', (data) => seen.push(`ping ${Buffer.from(data).toString()}`))
          duplex.events.on('pong', (data) => seen.push(`pong ${Buffer.from(data).toString()}`))
          const [chunk] = await onceWithin<[Buffer]>(duplex, 'data')
          return chunk.toString()
        }
        return undefined
      })()
      // The request and the first frames in one TCP write: RFC 6455 §4.1 tells a client to wait
      // for the 101, but ws reads what an eager one sent along with the handshake.
      const socket = netConnect(port, '127.0.0.1')
      cleanup.add(() => {
        socket.destroy()
      })
      socket.write(
        Buffer.concat([
          Buffer.from(upgradeRequest(port), 'latin1'),
          encodeFrame({ opcode: Opcode.Ping, payload: Buffer.from('early ping'), mask: true }),
          encodeFrame({ opcode: Opcode.Pong, payload: Buffer.from('early pong'), mask: true }),
          encodeFrame({ opcode: Opcode.Binary, payload: Buffer.from('bytes'), mask: true })
        ])
      )
      expect(await withTimeout(got, 3000, 'the loop to read the bytes')).to.equal('bytes')
      expect(seen).to.deep.equal(['ping early ping', 'pong early pong'])
    })

    it('hands each connection to one of several loops', async () => {
      const { server, url } = await unheard()
      const taken: WsDuplex[][] = [[], []]
      const loops = taken.map(async (mine) => {
        for await (const duplex of server) mine.push(duplex)
      })
      for (let i = 0; i < 4; i++) (await open(url)).resume()
      await withTimeout(server.close(), 3000, 'server.close()')
      await withTimeout(Promise.all(loops), 2000, 'the loops to end')
      expect(taken.map((mine) => mine.length)).to.deep.equal([2, 2])
      expect(new Set(taken.flat()).size).to.equal(4)
    })

    it("holds nothing while no loop runs and a 'connection' listener takes connections", async () => {
      const { server, url, accepted } = await start()
      ;(await open(url)).resume()
      const iterator = server[Symbol.asyncIterator]()
      const next = iterator.next()
      ;(await open(url)).resume()
      const { value } = await withTimeout(next, 2000, 'the second connection')
      expect(accepted).to.have.length(2)
      expect(value).to.equal(accepted[1])
      await iterator.return?.()
    })

    it('ends at once for a server that is already closed', async () => {
      const { server } = await start()
      await withTimeout(server.close(), 3000, 'server.close()')
      const yielded: WsDuplex[] = []
      await withTimeout(
        (async () => {
          for await (const duplex of server) yielded.push(duplex)
        })(),
        2000,
        'the for await loop to end'
      )
      expect(yielded).to.deep.equal([])
    })
  })

  describe('option path', () => {
    it('refuses other paths with HTTP 404', async () => {
      const { url, accepted } = await start({ path: '/ws' })
      for (const path of ['', '/other', '/ws/more', '/wsx']) {
        const error = await refusal(`${url}${path}`)
        expect(error, path).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 404 })
      }
      expect(accepted).to.have.length(0)
    })

    it('accepts the path, ignoring the query string', async () => {
      const { url, accepted } = await start({ path: '/ws' })
      await open(`${url}/ws`)
      await open(`${url}/ws?token=abc&x=1`)
      expect(accepted).to.have.length(2)
    })

    it("rejects a path that does not start with '/' with a TypeError naming it", async () => {
      const error = await rejectionOf(createServer({ host: '127.0.0.1', path: 'ws' }))
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.match(/`path`/)
    })
  })

  describe('option allowedOrigins', () => {
    it('refuses an origin not in the list with HTTP 403', async () => {
      const { url, accepted } = await start({ allowedOrigins: ['https://app.example'] })
      const error = await refusal(url, { headers: { Origin: 'https://evil.example' } })
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 403 })
      expect(accepted).to.have.length(0)
    })

    it('accepts an origin in the list', async () => {
      const { url, accepted } = await start({ allowedOrigins: ['https://app.example'] })
      await open(url, { headers: { Origin: 'https://app.example' } })
      expect(accepted).to.have.length(1)
    })

    it('accepts a request without an Origin header', async () => {
      const { url, accepted } = await start({ allowedOrigins: ['https://app.example'] })
      await open(url)
      expect(accepted).to.have.length(1)
    })
  })

  describe('option verifyClient', () => {
    it('refuses with HTTP 401 when it returns false', async () => {
      const { url, accepted } = await start({ verifyClient: () => false })
      const error = await refusal(url)
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 401 })
      expect(accepted).to.have.length(0)
    })

    it('refuses with the status it returns', async () => {
      const { url } = await start({ verifyClient: () => ({ status: 429 }) })
      const error = await refusal(url)
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 429 })
    })

    it('may be async', async () => {
      const { url, accepted } = await start({
        verifyClient: async ({ req }) => {
          await new Promise((resolve) => setImmediate(resolve))
          return req.headers['x-token'] === 'secret'
        }
      })
      const error = await refusal(url, { headers: { 'X-Token': 'wrong' } })
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 401 })
      await open(url, { headers: { 'X-Token': 'secret' } })
      expect(accepted).to.have.length(1)
    })

    it('refuses with HTTP 500 when it throws', async () => {
      const { url } = await start({
        verifyClient: () => {
          throw new Error('verifier bug')
        }
      })
      const error = await refusal(url)
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 500 })
    })

    it('answers an upgrade to another protocol (h2c) with 400, without calling verifyClient', async () => {
      let calls = 0
      const { url } = await start({
        verifyClient: () => {
          calls++
          return true
        }
      })
      const port = Number(new URL(url).port)
      const request = upgradeRequest(port).replace('Upgrade: websocket', 'Upgrade: h2c')
      const { response } = await tcpExchange(port, Buffer.from(request), { fin: false })
      expect(response.toString('latin1')).to.match(/^HTTP\/1\.1 400 /)
      expect(calls).to.equal(0)
    })

    it("names verifyClient in the 500's body only when it is what threw", async () => {
      const bodyOf = async (options: ServerOptions): Promise<string> => {
        const { url } = await start(options)
        const port = Number(new URL(url).port)
        const request = `${upgradeRequest(port).replace(/\r\n\r\n$/, '')}\r\nSec-WebSocket-Protocol: a\r\n\r\n`
        const { response } = await tcpExchange(port, Buffer.from(request), { fin: false })
        expect(response.toString()).to.match(/^HTTP\/1\.1 500 /)
        return response.toString().split('\r\n\r\n')[1] ?? ''
      }
      const bug = (): never => {
        throw new Error('a bug')
      }
      expect(await bodyOf({ verifyClient: bug })).to.equal('verifyClient failed')
      expect(await bodyOf({ handleProtocols: bug })).to.equal('Internal Server Error')
    })

    it('receives the origin, the request and whether the connection is TLS', async () => {
      const seen: VerifyClientInfo[] = []
      const { url } = await start({
        verifyClient: (info) => {
          seen.push(info)
          return true
        }
      })
      await open(`${url}/path?x=1`, {
        headers: { Origin: 'https://app.example', 'X-Token': 't' }
      })
      expect(seen).to.have.length(1)
      const [info] = seen as [VerifyClientInfo]
      expect(info.origin).to.equal('https://app.example')
      expect(info.secure).to.equal(false)
      expect(info.req.url).to.equal('/path?x=1')
      expect(info.req.headers['x-token']).to.equal('t')
    })
  })

  describe('option verifyClient (verdicts)', () => {
    for (const verdict of [
      {},
      'yes',
      { status: 200 },
      { status: 99999 },
      { status: 403, message: 7 }
    ]) {
      it(`answers 500 to the verdict ${JSON.stringify(verdict)}`, async () => {
        const { url } = await start({
          verifyClient: () => verdict as unknown as boolean
        })
        const error = await refusal(url)
        expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 500 })
      })
    }
  })

  describe('option validation', () => {
    it('rejects maxPayload 2^31, which ws would wrap to no limit', async () => {
      const error = await rejectionOf(createServer({ port: 0, maxPayload: 2 ** 31 }))
      expect(error).to.be.instanceOf(RangeError)
      expect(error.message).to.include('`maxPayload`')
    })

    it('ignores an unknown option given as undefined', async () => {
      await start({ prot: undefined } as ServerOptions)
    })

    const bad: [string, Record<string, unknown>][] = [
      ['host', { host: 123 }],
      ['allowedOrigins', { allowedOrigins: [1] }],
      ['handleProtocols', { handleProtocols: 5 }],
      ['perMessageDeflate', { perMessageDeflate: 'yes' }],
      // ws would read an array as its options object: compression on.
      ['perMessageDeflate', { perMessageDeflate: [] }],
      // Requests match on their path alone, so a query could never match.
      ['path', { path: '/chat?room=1' }],
      ['keepAlive.intervall', { keepAlive: { intervall: 5000 } }],
      ['server', { server: 5 }],
      ['verifyClient', { verifyClient: 'yes' }]
    ]
    it('rejects an unknown option (a typo) with a TypeError naming it', async () => {
      const error = await rejectionOf(createServer({ port: 0, prot: 1 } as ServerOptions))
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.include('`prot`')
    })

    for (const [name, options] of bad) {
      it(`rejects ${JSON.stringify(options)} with a TypeError naming \`${name}\``, async () => {
        const error = await rejectionOf(createServer({ port: 0, ...options } as ServerOptions))
        expect(error).to.be.instanceOf(TypeError)
        expect(error.message).to.include(`\`${name}\``)
      })
    }
  })

  describe('option maxConnections', () => {
    it('refuses a third concurrent client with HTTP 503, and accepts one again after a close', async () => {
      const { server, url, accepted } = await start({ maxConnections: 2 })
      const first = await open(url)
      await open(url)
      const error = await refusal(url)
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 503 })
      expect(server.connections.size).to.equal(2)

      const firstOnServer = accepted[0] as WsDuplex
      firstOnServer.resume()
      const serverSideClosed = onceWithin<[CloseInfo]>(firstOnServer.events, 'close', 3000)
      first.resume()
      await withTimeout(first.close(), 3000, 'close()')
      await serverSideClosed
      expect(server.connections.size).to.equal(1)

      await open(url)
      expect(server.connections.size).to.equal(2)
      expect(accepted).to.have.length(3)
    })

    it('counts upgrades still being verified: of three simultaneous clients, one gets 503', async () => {
      const { url, accepted } = await start({
        maxConnections: 2,
        verifyClient: () => new Promise((resolve) => setImmediate(() => resolve(true)))
      })
      const attempts = await Promise.allSettled([connect(url), connect(url), connect(url)])
      for (const attempt of attempts) {
        if (attempt.status === 'fulfilled') cleanup.add(() => void attempt.value.destroy())
      }
      const refused = attempts.flatMap((a) =>
        a.status === 'rejected' ? [a.reason as CodedError] : []
      )
      expect(refused).to.have.length(1)
      expect(refused[0]).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 503 })
      expect(accepted).to.have.length(2)
    })

    it('gives the place back when a client leaves while verifyClient runs', async () => {
      let calls = 0
      let firstVerified: (request: IncomingMessage) => void = () => {}
      const verifying = new Promise<IncomingMessage>((resolve) => (firstVerified = resolve))
      let release: (verdict: boolean) => void = () => {}
      const { url, accepted } = await start({
        maxConnections: 1,
        verifyClient: ({ req }) => {
          if (++calls > 1) return true
          firstVerified(req)
          return new Promise<boolean>((resolve) => (release = resolve))
        }
      })
      const leaver = await tcpClient(url)
      leaver.write(upgradeRequest(Number(new URL(url).port)))
      const request = await withTimeout(verifying, 2000, 'verifyClient to be called')
      const serverSocketClosed = withTimeout(
        new Promise((resolve) => request.socket.once('close', resolve)),
        2000,
        "the server socket's close"
      )
      leaver.resetAndDestroy()
      await serverSocketClosed
      release(true)
      await open(url)
      expect(accepted).to.have.length(1)
    })

    it('rejects 0 with a RangeError naming it', async () => {
      const error = await rejectionOf(createServer({ host: '127.0.0.1', maxConnections: 0 }))
      expect(error).to.be.instanceOf(RangeError)
      expect(error.message).to.match(/`maxConnections`/)
    })
  })

  describe('option maxPayload', () => {
    it('defaults to 1 MiB: a larger message fails the server side with ERR_PAYLOAD_TOO_LARGE and 1009', async () => {
      const { server, url } = await start()
      const accepted = onceWithin<[WsDuplex]>(server, 'connection')
      // One frame for the whole write, so the message is 1 MiB + 1 byte.
      const client = await open(url, { maxFrameSize: 2 * MiB })
      const [serverSide] = await accepted
      serverSide.resume()
      const failed = streamError(serverSide)
      client.resume()
      const clientFailed = streamError(client)
      client.write(Buffer.alloc(MiB + 1))
      expect(await failed).to.include({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 1009 })
      expect(await clientFailed).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1009 })
    })

    it('accepts a message of exactly 1 MiB by default, and can be raised', async () => {
      for (const [maxPayload, size] of [
        [undefined, MiB],
        [2 * MiB, MiB + 1]
      ] as const) {
        const { server, url } = await start(maxPayload === undefined ? {} : { maxPayload })
        const accepted = onceWithin<[WsDuplex]>(server, 'connection')
        const client = await open(url, { maxFrameSize: 2 * MiB })
        const [serverSide] = await accepted
        const received = collect(serverSide)
        client.end(Buffer.alloc(size, 1))
        expect((await received).length).to.equal(size)
      }
    })
  })

  describe('option perMessageDeflate', () => {
    it('is off by default even when the client offers it', async () => {
      const { server, url } = await start()
      const accepted = onceWithin<[WsDuplex]>(server, 'connection')
      const client = await open(url, { perMessageDeflate: true })
      const [serverSide] = await accepted
      expect(client.socket.extensions).to.equal('')
      expect(serverSide.socket.extensions).to.equal('')
    })

    it('is negotiated when true, and bytes still arrive', async () => {
      const { server, url } = await start({ perMessageDeflate: true })
      const accepted = onceWithin<[WsDuplex]>(server, 'connection')
      const client = await open(url, { perMessageDeflate: true })
      const [serverSide] = await accepted
      expect(client.socket.extensions).to.include('permessage-deflate')
      const received = collect(serverSide)
      client.end(Buffer.alloc(50_000, 'z'))
      expect((await received).equals(Buffer.alloc(50_000, 'z'))).to.equal(true)
    })
  })

  describe('option handleProtocols', () => {
    it('picks the subprotocol both sides then report', async () => {
      const { server, url } = await start({
        handleProtocols: (offered) => [...offered].at(-1) ?? false
      })
      const accepted = onceWithin<[WsDuplex]>(server, 'connection')
      const client = await open(url, { protocols: ['one', 'two'] })
      const [serverSide] = await accepted
      expect(client.socket.protocol).to.equal('two')
      expect(serverSide.socket.protocol).to.equal('two')
    })
  })

  describe('option allowSynchronousEvents', () => {
    /**
     * Two frames in one TCP write: did the second reach 'data' before a microtask queued by the
     * first could run (same tick), or only after (ws deferred it with setImmediate)?
     */
    async function secondFrameInSameTick(options: ServerOptions): Promise<boolean> {
      const { server, url } = await start(options)
      const accepted = onceWithin<[WsDuplex]>(server, 'connection')
      const peer = await rawConnect(url)
      cleanup.add(() => {
        peer.socket.destroy()
      })
      const [serverSide] = await accepted
      // Cleanup cuts the raw peer off; the 1006 that gives the server side is not under test.
      serverSide.on('error', () => {})
      const arrivals: boolean[] = []
      let firstTickOver = false
      const both = new Promise<void>((resolve) => {
        serverSide.on('data', () => {
          arrivals.push(firstTickOver)
          if (arrivals.length === 1) queueMicrotask(() => (firstTickOver = true))
          if (arrivals.length === 2) resolve()
        })
      })
      const frame = (byte: number): Buffer =>
        encodeFrame({ opcode: Opcode.Binary, payload: Buffer.from([byte]), mask: true })
      peer.writeRaw(Buffer.concat([frame(1), frame(2)]))
      await withTimeout(both, 3000, 'two frames')
      return arrivals[1] === false
    }

    it('is true by default: frames read together are handed on in the same tick', async () => {
      expect(await secondFrameInSameTick({})).to.equal(true)
    })

    it('false reaches ws: each frame waits for its own turn', async () => {
      expect(await secondFrameInSameTick({ allowSynchronousEvents: false })).to.equal(false)
    })

    it('rejects a non-boolean with a TypeError naming it', async () => {
      const error = await rejectionOf(
        createServer({ host: '127.0.0.1', allowSynchronousEvents: 1 as unknown as boolean })
      )
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.match(/`allowSynchronousEvents`/)
    })
  })

  describe('option closeTimeout', () => {
    it('at its largest still waits for a slow client to answer the close', async () => {
      const { url, server } = await start({ closeTimeout: 2 ** 31 - 1 })
      const accepted = onceWithin<[WsDuplex]>(server, 'connection')
      const peer = await rawConnect(url)
      cleanup.add(() => peer.reset())
      const [duplex] = await accepted
      const { closeInfo, warnings, firstFrame } = await closeAnsweredSlowly(duplex, peer)
      expect(firstFrame).to.equal(Opcode.Close)
      expect(closeInfo).to.deep.include({ code: 1000, wasClean: true })
      expect(warnings).to.not.include('TimeoutOverflowWarning')
    })
  })

  describe('option handshakeTimeout', () => {
    it('drops a client that never completes its upgrade request', async () => {
      const { url } = await start({ handshakeTimeout: 200 })
      const socket = netConnect(Number(new URL(url).port), '127.0.0.1')
      socket.on('error', () => {})
      cleanup.add(() => {
        socket.destroy()
      })
      await onceWithin(socket, 'connect')
      socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n')
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      await onceWithin(socket, 'close', 3000)
      expect(Buffer.concat(chunks).toString('latin1')).to.match(/^HTTP\/1\.1 408 /)
    })
  })

  describe('options object', () => {
    it('is not modified', async () => {
      const options: ServerOptions = {
        host: '127.0.0.1',
        port: 0,
        path: '/ws',
        allowedOrigins: ['https://app.example'],
        maxConnections: 5,
        maxPayload: 2 * MiB,
        keepAlive: { interval: 60_000 },
        perMessageDeflate: { threshold: 10 }
      }
      const before = structuredClone(options)
      const server = await createServer(options)
      cleanup.add(() => server.close())
      const { port } = server.address() as AddressInfo
      await open(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: true })
      expect(options).to.deep.equal(before)
    })
  })

  describe('option server', () => {
    async function startHttp(): Promise<{ http: Server; base: string }> {
      const http = createHttpServer((_request, response) => response.end('plain http'))
      http.listen(0, '127.0.0.1')
      await onceWithin(http, 'listening')
      cleanup.add(
        () =>
          new Promise<void>((resolve) => {
            http.closeAllConnections()
            http.close(() => resolve())
          })
      )
      const { port } = http.address() as AddressInfo
      return { http, base: `127.0.0.1:${port}` }
    }

    it('attaches to an existing http server, which still serves plain requests', async () => {
      const { http, base } = await startHttp()
      const server = await createServer({ server: http })
      cleanup.add(() => server.close())
      const accepted = onceWithin<[WsDuplex]>(server, 'connection')
      const client = await open(`ws://${base}/`)
      const [serverSide] = await accepted
      const received = collect(serverSide)
      client.end(Buffer.from('over the shared port'))
      expect((await received).toString()).to.equal('over the shared port')
      const response = await get(`http://${base}/`)
      expect(response.status).to.equal(200)
      expect(response.body).to.equal('plain http')
    })

    it('shares one http server between servers on different paths; a path none serves gets 404', async () => {
      const { http, base } = await startHttp()
      const paths = ['/a', '/b']
      for (const path of paths) {
        const server = await createServer({ server: http, path }, (duplex) => {
          duplex.end(Buffer.from(`served ${path}`))
        })
        cleanup.add(() => server.close())
      }
      for (const path of paths) {
        const client = await open(`ws://${base}${path}`)
        expect((await collect(client)).toString()).to.equal(`served ${path}`)
      }
      expect(await refusal(`ws://${base}/c`)).to.include({ status: 404 })
    })

    for (const order of ['before', 'after'] as const) {
      it(`leaves other paths to the application's own upgrade handler registered ${order} it`, async () => {
        const { http, base } = await startHttp()
        const own = new WebSocketServer({ noServer: true })
        cleanup.add(() => own.close())
        const ownHandler = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
          if (request.url !== '/other') return
          own.handleUpgrade(request, socket, head, (ws) => {
            // Open until the client answers: bytes written after the 101 reach it meanwhile.
            ws.once('message', () => ws.close(1000))
            ws.send(Buffer.from('from the app'))
          })
        }
        if (order === 'before') http.on('upgrade', ownHandler)
        const server = await createServer({ server: http, path: '/stream' })
        cleanup.add(() => server.close())
        if (order === 'after') http.on('upgrade', ownHandler)

        // Before, ws-duplex's 404 was written onto the socket the app had upgraded (or the
        // app got a dead socket): the client saw a corrupt frame or an HTTP error.
        const client = await open(`ws://${base}/other`)
        const [greeting] = await onceWithin<[Buffer]>(client, 'data')
        expect(greeting.toString()).to.equal('from the app')
        client.write(Buffer.from('thanks'))
        expect((await collect(client)).length).to.equal(0)
        expect(client.closeInfo).to.deep.include({ code: 1000, wasClean: true })
        const accepted = onceWithin<[WsDuplex]>(server, 'connection')
        const ours = await open(`ws://${base}/stream`)
        const [serverSide] = await accepted
        serverSide.end(Buffer.from('from ws-duplex'))
        expect((await collect(ours)).toString()).to.equal('from ws-duplex')
      })
    }

    it("leaves the attached server's errors to its own listeners", async () => {
      const { base } = await startHttp()
      const http = createHttpServer()
      const server = await createServer({ server: http })
      cleanup.add(() => server.close())
      const relayed: Error[] = []
      server.on('error', (error) => relayed.push(error))
      const failed = onceWithin<[Error]>(http, 'error')
      http.listen(Number(base.split(':')[1]), '127.0.0.1')
      const [error] = await failed
      expect(error).to.include({ code: 'EADDRINUSE' })
      expect(relayed).to.deep.equal([])
    })

    it('leaves the http server listening on close()', async () => {
      const { http, base } = await startHttp()
      const server = await createServer({ server: http })
      cleanup.add(() => server.close())
      await withTimeout(server.close(), 3000, 'server.close()')
      expect(http.listening).to.equal(true)
      const response = await get(`http://${base}/`)
      expect(response.status).to.equal(200)
      expect(response.body).to.equal('plain http')
    })
  })

  describe('plain HTTP', () => {
    it('answers a GET on a server it owns with 426 Upgrade Required', async () => {
      const { url } = await start()
      const response = await get(url.replace('ws://', 'http://') + '/')
      expect(response.status).to.equal(426)
      expect(response.headers.upgrade).to.equal('websocket')
    })
  })

  describe('#close', () => {
    it('closes every client with 1001, ends their streams cleanly, and refuses new connections', async () => {
      const { server, url } = await start()
      const clients = [await open(url), await open(url), await open(url)]
      const errors: Error[] = []
      for (const client of clients) client.on('error', (error: Error) => errors.push(error))
      const closes = clients.map((client) => onceWithin<[CloseInfo]>(client.events, 'close', 3000))
      const reads = clients.map((client) => collect(client, 3000))

      await withTimeout(server.close(), 3000, 'server.close()')

      for (const [info] of await Promise.all(closes)) {
        expect(info).to.deep.include({ code: 1001, wasClean: true })
      }
      for (const bytes of await Promise.all(reads)) expect(bytes.length).to.equal(0)
      for (const client of clients) {
        expect(client.closeInfo).to.deep.include({ code: 1001, wasClean: true })
      }
      expect(errors).to.deep.equal([])
      expect(server.connections.size).to.equal(0)

      const error = await refusal(url)
      expect(error.code).to.equal('ERR_CONNECT_FAILED')
    })

    it('resolves within closeTimeout when a client never answers the close frame', async () => {
      const { server, url, accepted } = await start({ closeTimeout: 200 })
      const connected = onceWithin<[WsDuplex]>(server, 'connection')
      const peer = await rawConnect(url)
      cleanup.add(() => peer.reset())
      const [serverSide] = await connected
      const failed = streamError(serverSide)
      await withTimeout(server.close(), 2000, 'server.close()')
      expect((await peer.readUntilClose(1000)).close?.code).to.equal(1001)
      expect(await failed).to.include({ code: 'ERR_CLOSE_TIMEOUT' })
      await peer.tcpClosed(1000)
      expect(accepted).to.have.length(1)
    })

    it('refuses with 503 an upgrade still being verified when close() starts', async () => {
      let verifying: () => void = () => {}
      const called = new Promise<void>((resolve) => (verifying = resolve))
      let release: (verdict: boolean) => void = () => {}
      const { server, url, accepted } = await start({
        verifyClient: () =>
          new Promise<boolean>((resolve) => {
            release = resolve
            verifying()
          })
      })
      const attempt = rejectionOf(connect(url))
      await withTimeout(called, 2000, 'verifyClient to be called')
      const closing = server.close()
      release(true)
      const error = await attempt
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 503 })
      await withTimeout(closing, 3000, 'server.close()')
      expect(accepted).to.have.length(0)
    })

    it('ends clients that sent no request or half of one, instead of waiting for them', async () => {
      const { server, url } = await start()
      const silent = await tcpClient(url)
      const halfway = await tcpClient(url)
      halfway.write(upgradeRequest(Number(new URL(url).port)).slice(0, 40))
      // The server accepts in order: once this client is in, so are the two above.
      await open(url)
      const ended = [silent, halfway].map((socket) => onceWithin(socket, 'close', 2000))
      await withTimeout(server.close(), 2000, 'server.close()')
      await Promise.all(ended)
    })

    it('refuses with 503 a verifyClient that never settles, and resolves', async () => {
      let verifying: () => void = () => {}
      const called = new Promise<void>((resolve) => (verifying = resolve))
      const { server, url } = await start({
        verifyClient: () => {
          verifying()
          return new Promise<boolean>(() => {})
        }
      })
      const attempt = rejectionOf(connect(url))
      await withTimeout(called, 2000, 'verifyClient to be called')
      await withTimeout(server.close(), 2000, 'server.close()')
      expect(await attempt).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 503 })
    })

    it('does not wait for a refused client that keeps its side of TCP open', async () => {
      const { server, url } = await start({ path: '/only' })
      const client = await tcpClient(url, true)
      client.write(upgradeRequest(Number(new URL(url).port)))
      expect(await receivedUntilEnd(client)).to.match(/^HTTP\/1\.1 404 /)
      await withTimeout(server.close(), 2000, 'server.close()')
    })

    it('called from a connection listener or a for await body, closes that connection with 1001', async () => {
      for (const via of ['listener', 'for await'] as const) {
        const server = await createServer({ host: '127.0.0.1', port: 0 })
        cleanup.add(() => withTimeout(server.close(), 5000, 'server.close()'))
        if (via === 'listener') server.on('connection', () => void server.close())
        else {
          void (async () => {
            for await (const duplex of server) {
              expect(duplex).to.be.instanceOf(WsDuplex)
              void server.close()
              break
            }
          })()
        }
        const { port } = server.address() as AddressInfo
        const client = await open(`ws://127.0.0.1:${port}`)
        client.resume()
        const [info] = await onceWithin<[CloseInfo]>(client.events, 'close', 3000)
        expect(info, via).to.deep.include({ code: 1001, wasClean: true })
      }
    })

    it("emits 'close' and is idempotent", async () => {
      const { server } = await start()
      const closed = onceWithin(server, 'close')
      const first = server.close()
      expect(server.close()).to.equal(first)
      await withTimeout(first, 3000, 'server.close()')
      await closed
    })
  })

  describe('listen errors', () => {
    it('rejects with EADDRINUSE when the port is taken, and emits nothing else', async () => {
      const first = await createServer({ port: 0, host: '127.0.0.1' })
      cleanup.add(() => first.close())
      const { port } = first.address() as AddressInfo
      const uncaught: unknown[] = []
      const onUncaught = (error: unknown): void => {
        uncaught.push(error)
      }
      process.on('uncaughtException', onUncaught)
      cleanup.add(() => {
        process.off('uncaughtException', onUncaught)
      })
      const error = await createServer({ port, host: '127.0.0.1' }).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'EADDRINUSE' })
      // Give any stray 'error' re-emit its turn of the loop before checking none came.
      await new Promise((resolve) => setImmediate(resolve))
      expect(uncaught).to.deep.equal([])
    })
  })

  describe('option port', () => {
    it('rejects -1 with a RangeError naming it', async () => {
      const error = await rejectionOf(createServer({ host: '127.0.0.1', port: -1 }))
      expect(error).to.be.instanceOf(RangeError)
      expect(error.message).to.match(/`port`/)
    })
  })
})
