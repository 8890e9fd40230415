import type { AddressInfo } from 'node:net'
import { expect } from 'chai'
import fc from 'fast-check'
import { connect, createServer, WsDuplexError, type WsDuplexServer } from '../lib/index.js'
import {
  caseBytes,
  closeFrame,
  declared,
  DOCUMENTED_ERRORS,
  encodeHostile,
  expectedOutcome,
  frame,
  fragments,
  hostileCase,
  resourceCounts,
  tcpExchange,
  upgradeRequest,
  validPrefix,
  watchDuplex,
  type Expected,
  type HostileCase,
  type Outcome
} from './helpers/hostile.js'
import {
  Opcode,
  rawConnect,
  startRawServer,
  type ReadResult,
  type RawPeer,
  type RawServer
} from './helpers/raw-peer.js'
import { withTimeout } from './helpers/wait.js'

// Hostile peers, generated: every connection must end within BOUND_MS with a documented error
// code (or cleanly, after a valid close) and the close code RFC 6455 asks for on the wire.

/** `npm run soak` multiplies every property's runs (17 gives over 10,000 cases in all). */
const SCALE = Number(process.env.WS_DUPLEX_HOSTILE_SCALE ?? '1')
const runs = (n: number): number => Math.round(n * SCALE)
const MAX_PAYLOAD = 64 * 1024
const CLOSE_TIMEOUT = 500
const BOUND_MS = 3000
const MIB = 1024 * 1024

/** Plays the hostile peer's ending and reads what comes back until TCP closes. */
async function finish(peer: RawPeer, c: HostileCase): Promise<ReadResult | undefined> {
  if (c.ending.kind === 'reset') {
    peer.reset()
    return undefined
  }
  if (c.ending.kind !== 'close') peer.end()
  const got = await peer.readUntilClose(BOUND_MS)
  if (got.close !== undefined) {
    if (c.answer === 'echo' && peer.socket.writable) peer.sendClose(got.close.code)
    peer.end()
  }
  await peer.tcpClosed(BOUND_MS)
  return got
}

function describeCase(c: HostileCase, expected: Expected): string {
  const frames = c.frames.map((f) => `${f.opcode}${f.fin ? '' : '~'}`).join(',')
  return `${expected.kind} (${expected.why}) for frames [${frames}] + ${c.ending.kind}`
}

/** The assertions every generated case shares, whichever side is under test. */
function check(
  c: HostileCase,
  expected: Expected,
  outcome: Outcome,
  wire: ReadResult | undefined
): void {
  const what = describeCase(c, expected)
  const error = outcome.error
  expect(outcome.wsListeners, `listeners left on the ws socket: ${what}`).to.equal(0)
  if (expected.kind === 'reset') {
    if (error !== undefined) {
      expect(error, what).to.be.instanceOf(WsDuplexError)
      expect(DOCUMENTED_ERRORS, what).to.include((error as WsDuplexError).code)
    }
    expect(expected.data.subarray(0, outcome.data.length).equals(outcome.data), what).to.equal(true)
    return
  }
  expect(outcome.data.equals(expected.data), `delivered bytes: ${what}`).to.equal(true)
  if (expected.kind === 'clean') {
    expect(error, what).to.equal(undefined)
    expect(outcome.ended, what).to.equal(true)
    expect(wire?.close, `the echoed close frame: ${what}`).to.deep.include({
      code: expected.wire
    })
    return
  }
  expect(error, what).to.be.instanceOf(WsDuplexError)
  const { code, closeCode } = error as WsDuplexError
  expect({ code, closeCode }, what).to.deep.equal({
    code: expected.code,
    closeCode: expected.closeCode
  })
  if (expected.wire === 'none') {
    expect(wire?.close, `no close frame on the wire: ${what}`).to.equal(undefined)
  } else {
    expect(wire?.close, `the close frame on the wire: ${what}`).to.deep.include({
      code: expected.wire
    })
  }
}

describe('hostile peers (generated)', function () {
  this.timeout(30_000 * SCALE)

  let server: WsDuplexServer
  let url: string
  let port: number
  let baseline: { sockets: number; timers: number }
  const outcomes = new Map<string, Promise<Outcome>>()
  const waiters = new Map<string, (outcome: Promise<Outcome>) => void>()
  let probes = 0

  /** The server-side outcome of a connection: by the client's port, or its x-probe header. */
  function serverOutcome(key: string): Promise<Outcome> {
    const ready = outcomes.get(key)
    if (ready !== undefined) return ready
    const wait = new Promise<Promise<Outcome>>((resolve) => waiters.set(key, resolve))
    return withTimeout(wait, BOUND_MS, 'the server-side connection').then((o) => o)
  }

  function keyOf(peer: RawPeer): string {
    return `port:${peer.socket.localPort ?? -1}`
  }

  before(async () => {
    await Promise.resolve()
    baseline = resourceCounts()
    server = await createServer(
      {
        port: 0,
        host: '127.0.0.1',
        closeTimeout: CLOSE_TIMEOUT,
        maxPayload: MAX_PAYLOAD,
        handshakeTimeout: 1000
      },
      (duplex, request) => {
        const outcome = watchDuplex(duplex)
        const probe = request.headers['x-probe']
        const key =
          typeof probe === 'string' ? `probe:${probe}` : `port:${request.socket.remotePort ?? -1}`
        outcomes.set(key, outcome)
        void outcome.then(() => outcomes.delete(key))
        waiters.get(key)?.(outcome)
        waiters.delete(key)
      }
    )
    port = (server.address() as AddressInfo).port
    url = `ws://127.0.0.1:${port}`
  })

  after(() => server.close())

  async function runServerCase(c: HostileCase): Promise<void> {
    const expected = expectedOutcome(c, MAX_PAYLOAD)
    const peer = await rawConnect(url)
    try {
      const outcome = serverOutcome(keyOf(peer))
      peer.writeRaw(caseBytes(c, 'server'))
      const wire = await finish(peer, c)
      check(c, expected, await withTimeout(outcome, BOUND_MS, 'the server duplex to end'), wire)
    } finally {
      peer.reset()
    }
  }

  /** A normal client can still connect, send bytes and close cleanly. */
  async function stillServes(): Promise<void> {
    const probe = String(++probes)
    const client = await connect(url, {
      closeTimeout: CLOSE_TIMEOUT,
      timeout: BOUND_MS,
      headers: { 'x-probe': probe }
    })
    const outcome = serverOutcome(`probe:${probe}`)
    const clientDone = watchDuplex(client)
    client.end(Buffer.from('still here'))
    const [got, mine] = await withTimeout(
      Promise.all([outcome, clientDone]),
      BOUND_MS,
      'a normal exchange'
    )
    expect(got.error).to.equal(undefined)
    expect(got.data.toString()).to.equal('still here')
    expect(mine.error).to.equal(undefined)
  }

  describe('a raw client against createServer()', () => {
    it('every generated sequence ends in bound with the modelled error and close code', async () => {
      await fc.assert(fc.asyncProperty(hostileCase({ maxPayload: MAX_PAYLOAD }), runServerCase), {
        numRuns: runs(350)
      })
    })

    it('a 64-bit length over 2^53 is "too big" (1009) in the error as on the wire', async () => {
      const huge = fc.record({
        frames: fc
          .tuple(validPrefix, declared(2n ** 53n, 2n ** 64n - 1n))
          .map(([prefix, bad]) => [...prefix, ...bad]),
        ending: fc.constant<HostileCase['ending']>({ kind: 'fin' }),
        answer: fc.constantFrom<HostileCase['answer']>('echo', 'fin')
      })
      await fc.assert(fc.asyncProperty(huge, runServerCase), { numRuns: runs(20) })
    })
  })

  describe('a raw server against connect()', () => {
    let raw: RawServer
    before(async () => {
      raw = await startRawServer()
    })
    after(() => raw.close())

    async function runClientCase(c: HostileCase): Promise<void> {
      const expected = expectedOutcome(c, MAX_PAYLOAD)
      const pending = connect(raw.url, {
        maxPayload: MAX_PAYLOAD,
        closeTimeout: CLOSE_TIMEOUT,
        timeout: BOUND_MS
      })
      const peer = await raw.nextPeer(BOUND_MS)
      try {
        const duplex = await pending
        const outcome = watchDuplex(duplex)
        peer.writeRaw(caseBytes(c, 'client'))
        const wire = await finish(peer, c)
        check(c, expected, await withTimeout(outcome, BOUND_MS, 'the client duplex to end'), wire)
      } finally {
        peer.reset()
      }
    }

    it('every generated sequence ends in bound with the modelled error and close code', async () => {
      await fc.assert(fc.asyncProperty(hostileCase({ maxPayload: MAX_PAYLOAD }), runClientCase), {
        numRuns: runs(120)
      })
    })
  })

  describe('garbage before and during the opening handshake', () => {
    function assertAnswered(response: Buffer, ms: number): void {
      expect(ms).to.be.below(BOUND_MS)
      if (response.length > 0) expect(response.toString('latin1')).to.match(/^HTTP\/1\.1 \d{3} /)
    }

    it('random bytes instead of a request: the connection is closed, the server stays up', async () => {
      const garbage = fc.tuple(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.boolean(),
        fc.boolean()
      )
      await fc.assert(
        fc.asyncProperty(garbage, async ([bytes, thenRequest, fin]) => {
          const payload = Buffer.concat([
            bytes,
            Buffer.from(thenRequest ? upgradeRequest(port) : '', 'latin1')
          ])
          // Without a FIN the server's handshakeTimeout (1 s, checked every 1 s) must act.
          const { response, ms } = await tcpExchange(port, payload, { fin, ms: BOUND_MS })
          assertAnswered(response, ms)
        }),
        { numRuns: runs(50) }
      )
      await stillServes()
    })

    it('a request mutated anywhere: answered or dropped in bound, the server stays up', async () => {
      const mutation = fc.record({
        at: fc.nat(),
        kind: fc.constantFrom('insert', 'replace', 'truncate'),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 40 })
      })
      await fc.assert(
        fc.asyncProperty(mutation, async ({ at, kind, bytes }) => {
          const request = Buffer.from(upgradeRequest(port), 'latin1')
          const i = at % request.length
          const mutated =
            kind === 'truncate'
              ? request.subarray(0, i)
              : Buffer.concat([
                  request.subarray(0, i),
                  bytes,
                  request.subarray(kind === 'insert' ? i : i + bytes.length)
                ])
          const { response, ms } = await tcpExchange(port, mutated, { ms: BOUND_MS })
          assertAnswered(response, ms)
        }),
        { numRuns: runs(50) }
      )
      await stillServes()
    })
  })

  describe('floods', () => {
    async function flood(
      frames: Parameters<typeof caseBytes>[0]['frames'],
      ending: HostileCase['ending']
    ): Promise<{ outcome: Outcome; wire: ReadResult | undefined; rss: number }> {
      const rssBefore = process.memoryUsage().rss
      const c: HostileCase = { frames, ending, answer: 'fin' }
      const peer = await rawConnect(url)
      try {
        const outcome = serverOutcome(keyOf(peer))
        peer.writeRaw(caseBytes(c, 'server'))
        // The server answers other clients while it works through the flood.
        await stillServes()
        const wire = await finish(peer, c)
        const result = await withTimeout(outcome, BOUND_MS, 'the flooded duplex to end')
        return { outcome: result, wire, rss: process.memoryUsage().rss - rssBefore }
      } finally {
        peer.reset()
      }
    }

    it('10,000 tiny fragments of one message under maxPayload are delivered whole', async () => {
      const frames = fragments(10_000, 6)
      const { outcome, wire, rss } = await flood(frames, {
        kind: 'close',
        frame: closeFrame(1000, Buffer.alloc(0))
      })
      expect(outcome.error).to.equal(undefined)
      expect(outcome.data.length).to.equal(60_000)
      expect(wire?.close?.code).to.equal(1000)
      expect(rss).to.be.below(100 * MIB)
    })

    it('10,000 tiny fragments adding up past maxPayload: 1009', async () => {
      const { outcome, wire, rss } = await flood(fragments(10_000, 7), { kind: 'fin' })
      expect(outcome.error).to.include({ code: 'ERR_PAYLOAD_TOO_LARGE', closeCode: 1009 })
      expect(wire?.close?.code).to.equal(1009)
      expect(rss).to.be.below(100 * MIB)
    })

    it('more fragments than ws accepts: the error names the close code sent', async () => {
      // ws refuses a message of more than 16,384 fragments with close code 1008.
      const { outcome, wire } = await flood(fragments(17_000, 1), { kind: 'fin' })
      expect(outcome.error).to.be.instanceOf(WsDuplexError)
      const error = outcome.error as WsDuplexError
      expect(DOCUMENTED_ERRORS).to.include(error.code)
      expect(wire?.close?.code).to.be.a('number')
      expect(error.closeCode, 'closeCode vs the close frame sent').to.equal(wire?.close?.code)
    })

    it('5,000 pings: the server stays responsive and the connection ends in bound', async () => {
      const pings = Array.from({ length: 5000 }, (_, i) => {
        const payload = Buffer.alloc(4)
        payload.writeUInt32BE(i)
        return frame({ opcode: Opcode.Ping, payload })
      })
      const { outcome, rss } = await flood(pings, {
        kind: 'close',
        frame: closeFrame(1000, Buffer.alloc(0))
      })
      // ws cuts off a peer with more than 60 pongs pending (no close frame): 1006 is allowed.
      if (outcome.error !== undefined) {
        expect(outcome.error).to.include({ code: 'ERR_ABNORMAL_CLOSURE' })
      }
      expect(rss).to.be.below(100 * MIB)
    })
  })

  describe('silent peers', () => {
    /** Sends `bytes` and then neither reads on nor closes: only the server can end it. */
    async function silent(
      bytes: Buffer
    ): Promise<{ ms: number; error: unknown; wire: number | undefined }> {
      const peer = await rawConnect(url)
      peer.socket.allowHalfOpen = true
      try {
        const outcome = serverOutcome(keyOf(peer))
        const started = Date.now()
        peer.writeRaw(bytes)
        const result = await withTimeout(outcome, BOUND_MS + 2000, 'a silent peer to be cut off')
        const ms = Date.now() - started
        const frame = await peer.nextFrame(100).catch(() => undefined)
        return { ms, error: result.error, wire: frame?.payload.readUInt16BE(0) }
      } finally {
        peer.reset()
      }
    }

    const text = encodeHostile(frame({ opcode: Opcode.Text, payload: Buffer.from('hi') }), 'server')

    it('after a protocol error, a peer that never closes is cut off within the bound', async () => {
      const bad = Buffer.from([0x83, 0x80, 0, 0, 0, 0]) // reserved opcode 3, masked
      const { ms, error, wire } = await silent(bad)
      expect(error).to.include({ code: 'ERR_PROTOCOL', closeCode: 1002 })
      expect(wire).to.equal(1002)
      expect(ms).to.be.below(BOUND_MS)
    })

    it('after a text frame, a peer that never answers the 1003 is cut off at closeTimeout', async () => {
      const { ms, error, wire } = await silent(text)
      expect(error).to.include({ code: 'ERR_TEXT_FRAME', closeCode: 1003 })
      expect(wire).to.equal(1003)
      expect(ms, 'closeTimeout is 500 ms').to.be.below(CLOSE_TIMEOUT + 400)
    })
  })

  describe('afterwards', () => {
    it('leaves no connection, socket or timer behind', async () => {
      await withTimeout(
        (async () => {
          while (server.connections.size > 0 || resourceCounts().sockets > baseline.sockets) {
            await new Promise<void>((resolve) => setImmediate(resolve))
          }
        })(),
        BOUND_MS,
        'every connection to be gone'
      )
      expect(server.connections.size).to.equal(0)
      const now = resourceCounts()
      expect(now.sockets).to.be.at.most(baseline.sockets)
      // The HTTP server's own header-timeout check interval is the one timer allowed.
      expect(now.timers).to.be.at.most(baseline.timers + 1)
    })
  })
})
