import type { AddressInfo } from 'node:net'
import { PassThrough, Writable } from 'node:stream'
import { runInNewContext } from 'node:vm'
import { expect } from 'chai'
import fc from 'fast-check'
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import { Uint8ArrayList } from 'uint8arraylist'
import { connect, createServer, WsDuplex, WsDuplexError } from '../lib/index.js'
import { Opcode, startRawServer, type RawPeer } from './helpers/raw-peer.js'
import { Cleanup, openDuplex, openRawPair, patternBytes, startWsServer } from './helpers/servers.js'
import { collect, onceWithin, until, whenStalled, withTimeout } from './helpers/wait.js'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

/** A ws-duplex server that collects each connection's bytes until a clean end. */
async function collectingServer(): Promise<{ url: string; received: () => Promise<Buffer> }> {
  const results: Promise<Buffer>[] = []
  const waiters: ((result: Promise<Buffer>) => void)[] = []
  const server = await createServer({ port: 0, host: '127.0.0.1' }, (duplex) => {
    const result = collect(duplex, 10_000)
    result.catch(() => {})
    const waiter = waiters.shift()
    if (waiter) waiter(result)
    else results.push(result)
  })
  cleanup.add(() => server.close())
  const { port } = server.address() as AddressInfo
  return {
    url: `ws://127.0.0.1:${port}`,
    received: () => {
      const ready = results.shift()
      if (ready) return ready
      return withTimeout(
        new Promise<Promise<Buffer>>((resolve) => waiters.push(resolve)),
        5000,
        'a connection'
      ).then((result) => result)
    }
  }
}

/** Whether frames wait in the source queue (what `source` holds, unread). */
/** Reads to our close frame and answers it, as a well-behaved peer does (RFC 6455 §5.5.1). */
async function answerClose(peer: RawPeer): Promise<Awaited<ReturnType<RawPeer['readUntilClose']>>> {
  const got = await peer.readUntilClose()
  peer.sendClose(got.close?.code ?? 1000)
  return got
}

function sourceHasFrames(duplex: WsDuplex): boolean {
  return (duplex.source as unknown as { queuedCost: number }).queuedCost > 0
}

/** What `sink(source)` rejects with; undefined when it resolves. */
function sinkRejection(duplex: WsDuplex, source: unknown): Promise<unknown> {
  return duplex.sink(source as Uint8Array[]).then(
    () => undefined,
    (e: unknown) => e
  )
}

/** A TypeError coded like Node's that names the type given, never the value ('secret…'). */
function expectInvalidArgType(error: unknown, described: string): void {
  expect(error, described).to.be.instanceOf(TypeError)
  expect((error as { code?: string }).code).to.equal('ERR_INVALID_ARG_TYPE')
  expect((error as Error).message)
    .to.contain(described)
    .and.not.contain('secret')
}

describe('WsDuplex source / sink', () => {
  describe('#sink', () => {
    it('sends every chunk, then closes with 1000, and works detached', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const { sink } = duplex
      const sinking = sink([Buffer.from('one '), new Uint8Array([116, 119, 111])])
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('one two')
      expect(got.close?.code).to.equal(1000)
      // It resolves once the peer has answered the close: only then is the transfer complete.
      peer.sendClose(1000)
      await withTimeout(sinking, 2000, 'the sink')
    })

    it('does not resolve when the stream is destroyed before the peer answers the close', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const sinking = duplex.sink([Buffer.from('all of it')])
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
      duplex.destroy()
      const error = await withTimeout(sinking, 2000, 'the sink').then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_STREAM_CLOSED' })
    })

    it('does not resolve when the peer answers the close with an error', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const sinking = duplex.sink([Buffer.from('all of it')])
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
      peer.sendClose(1011, 'disk full')
      const error = await withTimeout(sinking, 2000, 'the sink').then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
    })

    it('accepts Uint8ArrayList chunks and async sources', async () => {
      const { url, received } = await collectingServer()
      const duplex = await connect(url)
      async function* source(): AsyncGenerator<Uint8Array | Uint8ArrayList> {
        yield new Uint8ArrayList(Buffer.from('ab'), Buffer.from('cd'))
        yield Buffer.from('ef')
      }
      await duplex.sink(source())
      expect((await received()).toString()).to.equal('abcdef')
    })

    it('waits for a promise among the chunks of a plain iterable, as for await would', async () => {
      const { url, received } = await collectingServer()
      const duplex = await connect(url)
      const chunks = [
        Buffer.from('ab'),
        Promise.resolve(Buffer.from('cd')),
        new Uint8ArrayList(Buffer.from('ef'), Buffer.from('gh'))
      ] as unknown as Uint8Array[]
      await duplex.sink(chunks)
      expect((await received()).toString()).to.equal('abcdefgh')
    })

    it('takes a Uint8Array from another realm (vm, Jest), which fails instanceof', async () => {
      const { url, received } = await collectingServer()
      const duplex = await connect(url)
      const foreign = runInNewContext('new Uint8Array([104, 105])') as Uint8Array
      expect(foreign instanceof Uint8Array).to.equal(false)
      await duplex.sink([foreign, Buffer.from('!')])
      expect((await received()).toString()).to.equal('hi!')
    })

    it('rejects with the reason of a rejected promise among the chunks, after the bytes before it', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const failure = new Error('no chunk')
      const rejected = Promise.reject(failure)
      rejected.catch(() => {})
      expect(await sinkRejection(duplex, [Buffer.from('ok'), rejected])).to.equal(failure)
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('ok')
      expect(got.close?.code).to.equal(1011)
    })

    for (const kind of ['generator', 'async generator'] as const) {
      it(`awaits backpressure: a stalled peer stops a ${kind} being read`, async () => {
        const { duplex, peer } = await openRawPair(cleanup, { writableHighWaterMark: 16 * 1024 })
        peer.pause()
        let pulled = 0
        const { stalled, stop } = whenStalled(() => pulled, 200)
        cleanup.add(stop)
        const chunk = patternBytes(64 * 1024)
        function* source(): Generator<Uint8Array> {
          for (let i = 0; i < 1024; i++) {
            pulled += chunk.length
            yield chunk
          }
        }
        async function* asyncSource(): AsyncGenerator<Uint8Array> {
          yield* source()
        }
        const sinking = duplex.sink(kind === 'generator' ? source() : asyncSource())
        sinking.catch(() => {})
        await withTimeout(stalled, 8000, 'the sink to stall')
        expect(pulled, 'far less than the 64 MiB offered').to.be.below(32 * 1024 * 1024)
        peer.resume()
        const got = await peer.readUntilClose(20_000)
        expect(got.data.length).to.equal(1024 * chunk.length)
        peer.sendClose(1000)
        await sinking
      })
    }

    it('destroys the stream with 1011 and rejects when the source throws', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const duplex = await openDuplex(cleanup, raw.url)
      duplex.on('error', () => {})
      const peer = await raw.nextPeer()
      const failure = new Error('source broke')
      async function* source(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('x')
        throw failure
      }
      const error = await duplex.sink(source()).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.equal(failure)
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('rejects a chunk that is not bytes with ERR_INVALID_ARG_TYPE, after the bytes before it', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const cases: [unknown, string][] = [
        ['secret text', 'type string'],
        [7, 'type number'],
        [null, 'null'],
        [new Uint16Array([1, 2]), 'an instance of Uint16Array'],
        [[1, 2, 3], 'an instance of Array'],
        [[Buffer.from('parts')], 'an instance of Array'],
        [new Set([Buffer.from('parts')]), 'an instance of Set'],
        [new ArrayBuffer(4), 'an instance of ArrayBuffer']
      ]
      for (const [bad, described] of cases) {
        // No 'error' listener: the rejection is how a sink user hears of it.
        const duplex = await openDuplex(cleanup, raw.url)
        const peer = await raw.nextPeer()
        expectInvalidArgType(await sinkRejection(duplex, [Buffer.from('before'), bad]), described)
        const got = await peer.readUntilClose()
        expect(got.data.toString(), described).to.equal('before')
        expect(got.close?.code, described).to.equal(1011)
      }
    })

    it('rejects a source that is not iterable with ERR_INVALID_ARG_TYPE and sends 1011', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      for (const [bad, described] of [
        ['secret text', 'type string'],
        [42, 'type number'],
        [{}, 'an instance of Object']
      ] as const) {
        const duplex = await openDuplex(cleanup, raw.url)
        const peer = await raw.nextPeer()
        expectInvalidArgType(await sinkRejection(duplex, bad), described)
        expect((await peer.readUntilClose()).close?.code, described).to.equal(1011)
      }
    })

    it('fails like a throwing source when taking its iterator throws, or next() gives a non-object', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const failure = new Error('iterator factory broke')
      const sources: [unknown, (error: unknown) => void][] = [
        [
          {
            [Symbol.asyncIterator]() {
              throw failure
            }
          },
          (error) => expect(error).to.equal(failure)
        ],
        [
          {
            get [Symbol.iterator]() {
              throw failure
            }
          },
          (error) => expect(error).to.equal(failure)
        ],
        [
          { [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve(null) }) },
          (error) => expectInvalidArgType(error, 'null')
        ],
        [
          { [Symbol.iterator]: () => ({ next: () => 42 }) },
          (error) => expectInvalidArgType(error, 'type number')
        ]
      ]
      for (const [index, [source, check]] of sources.entries()) {
        const duplex = await openDuplex(cleanup, raw.url)
        const peer = await raw.nextPeer()
        check(await sinkRejection(duplex, source))
        // Torn down, as for a throwing next(): not left open with its write face taken.
        expect((await peer.readUntilClose()).close?.code, `source ${index}`).to.equal(1011)
      }
    })

    it('refuses a chunk that only claims to be a Uint8Array (Symbol.toStringTag)', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const impostor = { [Symbol.toStringTag]: 'Uint8Array' }
      expectInvalidArgType(await sinkRejection(duplex, [impostor]), 'an instance of Object')
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('rejects when the source throws, with nobody listening for error', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const failure = new Error('source broke')
      async function* source(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('x')
        throw failure
      }
      // Not onceWithin(): it would listen for 'error' itself.
      const closed = new Promise((resolve) => duplex.once('close', resolve))
      const error = await duplex.sink(source()).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.equal(failure)
      // 'close' comes after the unobserved 'error' event, which must not have crashed anything.
      await withTimeout(closed, 2000, "'close'")
      expect(duplex.errored).to.equal(failure)
      const got = await peer.readUntilClose()
      expect(got.data.toString()).to.equal('x')
      expect(got.close?.code).to.equal(1011)
    })
  })

  describe('#source', () => {
    it('yields the bytes received and ends after a clean close', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      peer.sendBinary(Buffer.from('hello '))
      peer.sendBinary(Buffer.from('world'))
      peer.sendClose(1000)
      expect((await collect(duplex.source)).toString()).to.equal('hello world')
    })

    it('throws the coded error after an abnormal close', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      peer.sendBinary(Buffer.from('cut'))
      peer.sendClose(1011)
      const error = await collect(duplex.source).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
    })

    it('pauses the socket when the consumer falls behind, then delivers every byte', async () => {
      const { url, nextSocket } = await startWsServer(cleanup)
      const duplex = await openDuplex(cleanup, url, { readableHighWaterMark: 64 * 1024 })
      const sender = new WsDuplex(await nextSocket())
      const payload = patternBytes(8 * 1024 * 1024)
      sender.end(payload)
      const iterator = duplex.source[Symbol.asyncIterator]()
      const first = await withTimeout(iterator.next(), 2000, 'the first chunk')
      await withTimeout(
        new Promise<void>((resolve) => {
          const check = (): void => (duplex.socket.isPaused ? resolve() : void setTimeout(check, 5))
          check()
        }),
        3000,
        'the socket to pause'
      )
      const chunks = [first.value as Uint8Array]
      for (;;) {
        const next = await withTimeout(iterator.next(), 5000, 'a chunk')
        if (next.done === true) break
        chunks.push(next.value)
      }
      expect(Buffer.concat(chunks).equals(payload)).to.equal(true)
    })

    it('delivers the bytes before a text frame, then throws ERR_TEXT_FRAME', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      peer.sendBinary(Buffer.from('kept'))
      peer.sendText('refused')
      const chunks: Uint8Array[] = []
      const reading = (async () => {
        for await (const chunk of duplex.source) chunks.push(chunk)
      })()
      expect((await peer.readUntilClose()).close?.code).to.equal(1003)
      peer.sendClose(1003)
      const error = await withTimeout(reading, 3000, 'the source').then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_TEXT_FRAME', closeCode: 1003 })
      expect(Buffer.concat(chunks).toString()).to.equal('kept')
    })

    it('return() answers a pending next() with done, as do later calls; the peer gets 1000', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const iterator = duplex.source[Symbol.asyncIterator]()
      const pending = iterator.next()
      expect(await iterator.return?.()).to.deep.equal({ value: undefined, done: true })
      expect(await withTimeout(pending, 2000, 'the pending next()')).to.include({ done: true })
      expect(await iterator.next()).to.include({ done: true })
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
    })

    it('answers overlapping next() calls in order, as an async generator does', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const iterator = duplex.source[Symbol.asyncIterator]()
      const calls = [iterator.next(), iterator.next(), iterator.next(), iterator.next()]
      peer.sendBinary(Buffer.from('one'))
      peer.sendBinary(Buffer.from('two'))
      peer.sendBinary(Buffer.from('three'))
      peer.sendClose(1000)
      const results = await withTimeout(Promise.all(calls), 2000, 'every next()')
      expect(
        results.map((r) => (r.done === true ? 'done' : Buffer.from(r.value).toString()))
      ).to.deep.equal(['one', 'two', 'three', 'done'])
    })

    it('rejects every overlapping next() with the error that ends the stream', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      duplex.on('error', () => {})
      const iterator = duplex.source[Symbol.asyncIterator]()
      const calls = [iterator.next(), iterator.next()].map((call) =>
        call.then(
          () => undefined,
          (e: unknown) => e
        )
      )
      peer.sendClose(1011)
      for (const error of await withTimeout(Promise.all(calls), 2000, 'both next() calls')) {
        expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
      }
    })

    it('throw() closes the iterator like a generator: later calls are done; the peer gets 1011', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      duplex.on('error', () => {})
      const iterator = duplex.source[Symbol.asyncIterator]()
      await iterator.throw?.(new Error('consumer broke'))
      expect(await iterator.next()).to.include({ done: true })
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('breaking out gives the peer 1000', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      peer.sendBinary(Buffer.from('first'))
      for await (const chunk of duplex.source) {
        expect(Buffer.from(chunk).toString()).to.equal('first')
        break
      }
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
    })
  })

  describe('faces', () => {
    /** A source that yields `first`, then stays open until released. */
    function heldOpen(first: Uint8Array): { source: AsyncGenerator<Uint8Array>; release(): void } {
      let release: () => void = () => {}
      const gate = new Promise<void>((resolve) => (release = resolve))
      async function* source(): AsyncGenerator<Uint8Array> {
        yield first
        await gate
      }
      return { source: source(), release: () => release() }
    }

    it('refuses write() while sink() is in use, and a second sink()', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const { source, release } = heldOpen(Buffer.from('a'))
      const sinking = duplex.sink(source)
      expect(() => duplex.write(Buffer.from('b')))
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_FACE_CONFLICT')
      const second = await duplex.sink([]).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(second).to.include({ code: 'ERR_FACE_CONFLICT' })
      release()
      await answerClose(peer)
      await sinking
    })

    it("refuses the Duplex read face once source is in use: 'data', 'readable', resume(), read(), iterator()", async () => {
      const { duplex } = await openRawPair(cleanup)
      void duplex.source
      const attempts: [string, () => unknown][] = [
        ["on('data')", () => duplex.on('data', () => {})],
        ["once('readable')", () => duplex.once('readable', () => {})],
        ['resume()', () => duplex.resume()],
        ['read()', () => duplex.read()]
      ]
      for (const [what, attempt] of attempts) {
        expect(attempt, what).to.throw(WsDuplexError).with.property('code', 'ERR_FACE_CONFLICT')
      }
      const viaIterator = await duplex
        .iterator()
        .next()
        .then(
          () => undefined,
          (e: unknown) => e
        )
      expect(viaIterator).to.include({ code: 'ERR_FACE_CONFLICT' })
      expect(duplex.listenerCount('data') + duplex.listenerCount('readable')).to.equal(0)
    })

    it('refuses source once read() was used', async () => {
      const { duplex } = await openRawPair(cleanup)
      duplex.read()
      expect(() => duplex.source)
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_FACE_CONFLICT')
    })

    it('refuses pipe() into the stream while sink() runs, and sink() after a pipe() into it', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const duplex = await openDuplex(cleanup, raw.url)
      const { source, release } = heldOpen(Buffer.from('a'))
      const sinking = duplex.sink(source)
      const input = new PassThrough()
      expect(() => input.pipe(duplex))
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_FACE_CONFLICT')
      // Nothing of the refused pipe is left on either side.
      expect(input.listenerCount('data')).to.equal(0)
      input.end(Buffer.from('never sent'))
      release()
      const peer = await raw.nextPeer()
      expect((await answerClose(peer)).data.toString()).to.equal('a')
      await sinking

      const other = await openDuplex(cleanup, raw.url)
      new PassThrough().pipe(other)
      const error = await other.sink([Buffer.from('x')]).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_FACE_CONFLICT' })
    })

    it('refuses sink() after write() and source after pipe()', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const duplex = await openDuplex(cleanup, raw.url)
      duplex.write(Buffer.from('x'))
      const error = await duplex.sink([]).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_FACE_CONFLICT' })
      const other = await openDuplex(cleanup, raw.url)
      other.resume()
      expect(() => other.source)
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_FACE_CONFLICT')
    })
  })

  describe('sink lifetime', () => {
    /** A source that yields `first`, then waits forever; records whether it was told to stop. */
    function stalledSource(first: Uint8Array): AsyncIterable<Uint8Array> & { returned: boolean } {
      let given = false
      const source = {
        returned: false,
        [Symbol.asyncIterator]: () => ({
          next: (): Promise<IteratorResult<Uint8Array>> => {
            if (given) return new Promise(() => {})
            given = true
            return Promise.resolve({ value: first, done: false })
          },
          return: (): Promise<IteratorResult<Uint8Array>> => {
            source.returned = true
            return Promise.resolve({ value: undefined, done: true })
          }
        })
      }
      return source
    }

    it('resolves when the peer closes cleanly while the source waits, and stops the source', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const source = stalledSource(Buffer.from('first'))
      const sinking = sinkRejection(duplex, source)
      expect((await peer.nextFrame()).payload.toString()).to.equal('first')
      peer.sendClose(1000)
      expect(await withTimeout(sinking, 2000, 'sink()')).to.equal(undefined)
      expect(source.returned).to.equal(true)
    })

    const endings: [string, (peer: RawPeer, duplex: WsDuplex) => void, object][] = [
      [
        'the peer closes with 1011',
        (peer) => peer.sendClose(1011),
        { code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 }
      ],
      [
        'the peer resets',
        (peer) => peer.reset(),
        { code: 'ERR_ABNORMAL_CLOSURE', closeCode: 1006 }
      ],
      ['destroy() is called', (_peer, duplex) => duplex.destroy(), { code: 'ERR_STREAM_CLOSED' }]
    ]
    for (const [ending, end, expected] of endings) {
      it(`settles when ${ending} while the source waits, and stops the source`, async () => {
        const { duplex, peer } = await openRawPair(cleanup)
        const source = stalledSource(Buffer.from('first'))
        const sinking = sinkRejection(duplex, source)
        expect((await peer.nextFrame()).payload.toString()).to.equal('first')
        end(peer, duplex)
        const error = await withTimeout(sinking, 2000, 'sink()')
        expect(error).to.include(expected)
        expect(source.returned).to.equal(true)
      })
    }

    for (const [ending, code] of [
      ['cleanly', 1000],
      ['with 1011', 1011]
    ] as const) {
      it(`it-pipe with an open sink source: a slow reader gets every byte when the peer closes ${ending}`, async () => {
        const { duplex, peer } = await openRawPair(cleanup)
        const payload = patternBytes(40 * 64 * 1024)
        for (let i = 0; i < payload.length; i += 64 * 1024) {
          peer.sendBinary(payload.subarray(i, i + 64 * 1024))
        }
        peer.sendClose(code)
        const received: Uint8Array[] = []
        const piping = pipe(stalledSource(Buffer.from('hello')), duplex, async (source) => {
          for await (const chunk of source) {
            received.push(chunk.slice())
            // A reader slower than the socket (5 ms a frame), so frames are still queued.
            await new Promise((resolve) => setTimeout(resolve, 5))
          }
        }).then(
          () => undefined,
          (e: unknown) => e
        )
        const outcome = await withTimeout(piping, 5000, 'pipe()')
        expect(Buffer.concat(received).equals(payload)).to.equal(true)
        if (code === 1000) expect(outcome).to.equal(undefined)
        else expect(outcome).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
      })
    }

    for (const [ending, end, expected] of [
      [
        'the peer resets',
        (_d: WsDuplex, peer: RawPeer) => peer.reset(),
        { code: 'ERR_ABNORMAL_CLOSURE' }
      ],
      ['destroy(err)', (d: WsDuplex) => d.destroy(new Error('mine')), { message: 'mine' }]
    ] as const) {
      it(`rejects after ${ending} at once when nobody reads the frames queued for source`, async () => {
        const { duplex, peer } = await openRawPair(cleanup, { closeTimeout: 10_000 })
        const source = duplex.source
        expect(source).to.not.equal(undefined)
        peer.sendBinary(Buffer.from('never read'))
        await until(
          () => duplex.readableLength > 0 || sourceHasFrames(duplex),
          'the frame to arrive'
        )
        const sinking = sinkRejection(duplex, stalledSource(Buffer.from('x')))
        expect((await peer.nextFrame()).payload.toString()).to.equal('x')
        end(duplex, peer)
        expect(await withTimeout(sinking, 1000, 'sink()')).to.include(expected)
      })
    }

    it('an echo (sink of its own source) keeps the error of a peer that resets: on the stream too', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const errored = new Promise<Error>((resolve) => duplex.once('error', resolve))
      const sinking = sinkRejection(duplex, duplex.source)
      peer.sendBinary(Buffer.from('echo me'))
      expect((await peer.nextFrame()).payload.toString()).to.equal('echo me')
      peer.reset()
      expect(await withTimeout(sinking, 2000, 'sink()')).to.include({
        code: 'ERR_ABNORMAL_CLOSURE'
      })
      expect(await withTimeout(errored, 2000, "'error'")).to.include({
        code: 'ERR_ABNORMAL_CLOSURE'
      })
    })

    it('break while a sink runs and the peer keeps sending: the sink settles, the peer gets 1011', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const sinking = sinkRejection(duplex, stalledSource(Buffer.from('x')))
      expect((await peer.nextFrame()).payload.toString()).to.equal('x')
      for (let i = 0; i < 20; i++) peer.sendBinary(Buffer.alloc(1000, i))
      for await (const chunk of duplex.source) {
        expect(chunk.length).to.equal(1000)
        break
      }
      expect(await withTimeout(sinking, 1000, 'sink()')).to.include({ code: 'ERR_STREAM_CLOSED' })
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('break once the last reply is in: the sink ends as its source does, and the peer gets 1000', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      let allAnswered = (): void => {}
      const answered = new Promise<void>((resolve) => (allAnswered = resolve))
      async function* requests(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('question')
        await answered
      }
      const sinking = duplex.sink(requests())
      expect((await peer.nextFrame()).payload.toString()).to.equal('question')
      peer.sendBinary(Buffer.from('answer'))
      for await (const reply of duplex.source) {
        expect(Buffer.from(reply).toString()).to.equal('answer')
        allAnswered()
        break
      }
      expect((await answerClose(peer)).close?.code).to.equal(1000)
      await withTimeout(sinking, 2000, 'sink()')
    })

    it('tells a source that gave a chunk that is not bytes to stop (its finally runs)', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      let cleaned = false
      function* source(): Generator<unknown> {
        try {
          yield Buffer.from('ok')
          yield 'not bytes'
        } finally {
          cleaned = true
        }
      }
      expectInvalidArgType(await sinkRejection(duplex, source()), 'type string')
      expect(cleaned).to.equal(true)
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('gives the peer 1011 when a plain generator fails with an AbortError at once', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      function* source(): Generator<Uint8Array> {
        yield Buffer.from('part')
        throw new DOMException('aborted', 'AbortError')
      }
      expect(await sinkRejection(duplex, source())).to.include({ name: 'AbortError' })
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
    })

    it('close() during a sink: the close is clean, and a later chunk rejects the sink', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      let release: () => void = () => {}
      const gate = new Promise<void>((resolve) => (release = resolve))
      let stopped = false
      async function* source(): AsyncGenerator<Uint8Array> {
        try {
          yield Buffer.from('sent')
          await gate
          yield Buffer.from('too late')
        } finally {
          stopped = true
        }
      }
      const sinking = sinkRejection(duplex, source())
      const reading = collect(duplex.source, 3000)
      expect((await peer.nextFrame()).payload.toString()).to.equal('sent')
      const closing = duplex.close()
      expect((await peer.nextFrame()).opcode).to.equal(Opcode.Close)
      release()
      const error = await withTimeout(sinking, 2000, 'sink()')
      expect(error).to.include({ code: 'ERR_STREAM_CLOSED' })
      expect(stopped).to.equal(true)
      peer.sendClose(1000)
      expect(await withTimeout(closing, 2000, 'close()')).to.deep.include({
        code: 1000,
        wasClean: true
      })
      expect((await reading).length).to.equal(0)
    })

    it('a source that ends with the stream (an echo) resolves after a clean close', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      async function* echo(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
        for await (const chunk of source) yield chunk
      }
      const sinking = duplex.sink(echo(duplex.source))
      peer.sendBinary(Buffer.from('ping'))
      expect((await peer.nextFrame()).payload.toString()).to.equal('ping')
      peer.sendClose(1000)
      await withTimeout(sinking, 2000, 'sink()')
      expect(duplex.closeInfo).to.deep.include({ code: 1000, wasClean: true })
    })

    for (const [name, abortError] of [
      ['a DOMException', () => new DOMException('aborted', 'AbortError')],
      ["an AbortSignal's reason", () => AbortSignal.abort().reason as Error]
    ] as const) {
      it(`gives the peer 1011 when the source fails with ${name} AbortError`, async () => {
        const { duplex, peer } = await openRawPair(cleanup)
        const failure = abortError()
        async function* source(): AsyncGenerator<Uint8Array> {
          yield Buffer.from('part')
          throw failure
        }
        expect(await sinkRejection(duplex, source())).to.equal(failure)
        const got = await peer.readUntilClose()
        expect(got.data.toString()).to.equal('part')
        expect(got.close?.code).to.equal(1011)
      })
    }

    it('breaking out of source while the sink still sends gives the peer 1011, not 1000', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      // Paced, so little is queued and the close frame is not stuck behind it (that gives 1006).
      async function* endless(): AsyncGenerator<Uint8Array> {
        for (;;) {
          yield Buffer.alloc(100)
          await new Promise((resolve) => setImmediate(resolve))
        }
      }
      const sinking = sinkRejection(duplex, endless())
      peer.sendBinary(Buffer.from('stop'))
      for await (const chunk of duplex.source) {
        expect(Buffer.from(chunk).toString()).to.equal('stop')
        break
      }
      expect((await peer.readUntilClose()).close?.code).to.equal(1011)
      expect(await withTimeout(sinking, 2000, 'sink()')).to.include({ code: 'ERR_STREAM_CLOSED' })
    })

    it('a reader through pipe() gets every byte before the error that fails a sink', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const payload = patternBytes(400_000)
      const received: Buffer[] = []
      const destination = new Writable({
        highWaterMark: 1024,
        write(chunk: Buffer, _encoding, callback) {
          received.push(chunk)
          setImmediate(callback)
        }
      })
      const errored = new Promise<Error>((resolve) => duplex.once('error', resolve))
      duplex.pipe(destination)
      const sinking = sinkRejection(duplex, stalledSource(Buffer.from('x')))
      for (let i = 0; i < payload.length; i += 40_000)
        peer.sendBinary(payload.subarray(i, i + 40_000))
      peer.sendClose(1011)
      expect(await withTimeout(errored, 5000, "'error'")).to.include({ closeCode: 1011 })
      expect(Buffer.concat(received).equals(payload)).to.equal(true)
      expect(await sinking).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR' })
    })

    const before: [string, (duplex: WsDuplex, peer: RawPeer) => Promise<unknown>][] = [
      ['end()', async (duplex) => duplex.end()],
      [
        'close()',
        async (duplex, peer) => {
          void duplex.close()
          await peer.nextFrame()
        }
      ],
      ['destroy()', async (duplex) => duplex.destroy()],
      [
        'a clean close by the peer',
        async (duplex, peer) => {
          duplex.resume()
          const closed = onceWithin(duplex.events, 'close')
          peer.sendClose(1000)
          await closed
        }
      ]
    ]
    for (const [what, happen] of before) {
      it(`rejects with ERR_STREAM_CLOSED when called after ${what}`, async () => {
        const { duplex, peer } = await openRawPair(cleanup)
        await happen(duplex, peer)
        for (const chunks of [[], [Buffer.from('late')]]) {
          expect(await sinkRejection(duplex, chunks), JSON.stringify(chunks)).to.include({
            code: 'ERR_STREAM_CLOSED'
          })
        }
      })
    }

    it('refuses end(chunk), and end(), while a sink runs', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      let release: () => void = () => {}
      const gate = new Promise<void>((resolve) => (release = resolve))
      async function* source(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('a')
        await gate
        yield Buffer.from('b')
      }
      const sinking = duplex.sink(source())
      expect(() => duplex.end(Buffer.from('x')))
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_FACE_CONFLICT')
      expect(() => duplex.end())
        .to.throw(WsDuplexError)
        .with.property('code', 'ERR_FACE_CONFLICT')
      release()
      const got = await answerClose(peer)
      expect(got.data.toString()).to.equal('ab')
      expect(got.close?.code).to.equal(1000)
      await withTimeout(sinking, 2000, 'sink()')
    })
  })

  describe('with it-pipe and it-length-prefixed', () => {
    it('carries length-prefixed messages, one frame per message batch', async () => {
      const count = 2000
      const messages = Array.from({ length: count }, (_, i) => patternBytes(100, i))
      let done: () => void = () => {}
      const allEchoed = new Promise<void>((resolve) => (done = resolve))
      // The server decodes each message and answers with its length-prefixed echo.
      const server = await createServer({ port: 0, host: '127.0.0.1' }, (duplex: WsDuplex) => {
        void pipe(duplex, (source) => lp.decode(source), lp.encode, duplex).catch(() => {})
      })
      cleanup.add(() => server.close())
      const { port } = server.address() as AddressInfo
      const client = await connect(`ws://127.0.0.1:${port}`)
      // WebSocket has no half-close: the client ends only once every echo is back.
      async function* outgoing(): AsyncGenerator<Uint8Array> {
        yield* messages
        await allEchoed
      }
      const echoed: Uint8Array[] = []
      await withTimeout(
        pipe(
          outgoing(),
          lp.encode,
          client,
          (source) => lp.decode(source),
          async (source) => {
            for await (const message of source) {
              echoed.push(message.subarray())
              if (echoed.length === count) done()
            }
          }
        ),
        10_000,
        'the echoes'
      )
      expect(echoed.length).to.equal(count)
      for (let i = 0; i < count; i++) {
        expect(
          Buffer.from(echoed[i] as Uint8Array).equals(messages[i] as Buffer),
          `message ${i}`
        ).to.equal(true)
      }
    })
  })

  describe('any chunking (property)', () => {
    const chunkings = fc.array(fc.uint8Array({ minLength: 0, maxLength: 3000 }), {
      minLength: 0,
      maxLength: 40
    })

    it('arrives identical through the Duplex face', async () => {
      const { url, received } = await collectingServer()
      await fc.assert(
        fc.asyncProperty(
          chunkings,
          fc.integer({ min: 1, max: 5000 }),
          async (chunks, maxFrameSize) => {
            const duplex = await connect(url, { maxFrameSize })
            for (const chunk of chunks) duplex.write(chunk)
            duplex.end()
            const got = await received()
            expect(got.equals(Buffer.concat(chunks))).to.equal(true)
          }
        ),
        { numRuns: 40 }
      )
    })

    it('arrives identical through the sink face, with Uint8ArrayList chunks', async () => {
      const { url, received } = await collectingServer()
      await fc.assert(
        fc.asyncProperty(chunkings, fc.boolean(), async (chunks, asList) => {
          const duplex = await connect(url)
          const source = asList ? chunks.map((chunk) => new Uint8ArrayList(chunk, chunk)) : chunks
          await duplex.sink(source)
          const expected = Buffer.concat(asList ? chunks.flatMap((c) => [c, c]) : chunks)
          expect((await received()).equals(expected)).to.equal(true)
        }),
        { numRuns: 40 }
      )
    })

    it('arrives identical through the source face', async () => {
      const server = await createServer({ port: 0, host: '127.0.0.1' })
      cleanup.add(() => server.close())
      const { port } = server.address() as AddressInfo
      const connections = server[Symbol.asyncIterator]()
      await fc.assert(
        fc.asyncProperty(chunkings, async (chunks) => {
          const client = await connect(`ws://127.0.0.1:${port}`)
          const { value: serverSide } = await withTimeout(connections.next(), 2000, 'a connection')
          const reading = collect((serverSide as WsDuplex).source)
          await client.sink(chunks)
          expect((await reading).equals(Buffer.concat(chunks))).to.equal(true)
        }),
        { numRuns: 30 }
      )
    })
  })

  describe('frames on the wire', () => {
    it('sends one length-prefixed message as one frame, not prefix and payload apart', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const piping = pipe([patternBytes(100)], lp.encode, duplex)
      const got = await answerClose(peer)
      await piping
      const binary = got.frames.filter((frame) => frame.opcode === Opcode.Binary)
      expect(binary.map((frame) => frame.payload.length)).to.deep.equal([101])
    })
  })

  it('emits warning events without listeners and without throwing', async () => {
    const { duplex, peer } = await openRawPair(cleanup, { text: 'ignore' })
    peer.sendText('unobserved')
    peer.sendBinary(Buffer.from('ok'))
    const [chunk] = await onceWithin<[Buffer]>(duplex, 'data')
    expect(chunk.toString()).to.equal('ok')
  })
})
