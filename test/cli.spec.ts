import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { closeSync, existsSync, openSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpsServer } from 'node:https'
import {
  connect as tcpConnect,
  createServer as createTcpServer,
  type AddressInfo,
  type Socket
} from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { expect } from 'chai'
import { main, ExitCode, type CliIo } from '../lib/cli.js'
import {
  connect,
  createServer,
  type ClosingInfo,
  type ServerOptions,
  type WsDuplex,
  type WsDuplexServer
} from '../lib/index.js'
import { upgradeRequest } from './helpers/hostile.js'
import { startRawServer } from './helpers/raw-peer.js'
import { Cleanup, patternBytes, streamError } from './helpers/servers.js'
import { collect, onceWithin, until, withTimeout } from './helpers/wait.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const bin = join(root, 'dist', 'bin.js')
const cleanup = new Cleanup()
afterEach(() => cleanup.run())

// A self-signed certificate for 127.0.0.1 and localhost (CA:TRUE, valid 2000-2100), made for
// these tests only; its key protects nothing.
const TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgyxU+nR/wlk6I+xYy
y8LMv2uTptYBV3b65WFynxbRFLehRANCAAQMGqHF7GuEkFfYmav1A5SBVnDeBvsT
8h/gsSEjYBjUxPC748ss+T3sl8Mojdo4SWx/qoXSnq1hRO8NwUgg5Wsh
-----END PRIVATE KEY-----
`
const TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBcTCCARegAwIBAgIBATAKBggqhkjOPQQDAjAZMRcwFQYDVQQDDA53cy1kdXBs
ZXggdGVzdDAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowGTEXMBUG
A1UEAwwOd3MtZHVwbGV4IHRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQM
GqHF7GuEkFfYmav1A5SBVnDeBvsT8h/gsSEjYBjUxPC748ss+T3sl8Mojdo4SWx/
qoXSnq1hRO8NwUgg5Wsho04wTDAPBgNVHRMBAf8EBTADAQH/MBoGA1UdEQQTMBGH
BH8AAAGCCWxvY2FsaG9zdDAdBgNVHQ4EFgQU8rWenIiuzs/Zf+c+fgMGIUwfSKMw
CgYIKoZIzj0EAwIDSAAwRQIhALiE43eJxTaB1npNoPD3BSdQYVxWS46Wm0Mef4pf
zgFjAiApFFBWMgX7dd0Dxvm43zgYPTfJymemXqCAuLjX0ogAdg==
-----END CERTIFICATE-----
`

// ------------------------------------------------------------------------------ helpers

/** What a stream emitted, and bounded waits for a pattern or a byte count in it. */
class Transcript {
  #text = ''
  #chunks: Buffer[] = []
  #length = 0
  #waiters = new Set<() => void>()

  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      this.#chunks.push(bytes)
      this.#length += bytes.length
      this.#text += bytes.toString('latin1')
      for (const waiter of this.#waiters) waiter()
    })
    // main() destroys stdout with the connection's error, as stream.pipeline does.
    stream.on('error', () => {})
  }

  get text(): string {
    return this.#text
  }

  get bytes(): Buffer {
    return Buffer.concat(this.#chunks)
  }

  waitFor(pattern: RegExp, ms = 3000): Promise<RegExpExecArray> {
    return this.#until(
      () => pattern.exec(this.#text) ?? undefined,
      ms,
      () => {
        return `${pattern} in ${JSON.stringify(this.#text.slice(-500))}`
      }
    )
  }

  /** Resolves with every byte once at least `count` were emitted. */
  waitForBytes(count: number, ms = 3000): Promise<Buffer> {
    return this.#until(
      () => (this.#length >= count ? this.bytes : undefined),
      ms,
      () => `${count} bytes (got ${this.#length})`
    )
  }

  #until<T>(check: () => T | undefined, ms: number, what: () => string): Promise<T> {
    const now = check()
    if (now !== undefined) return Promise.resolve(now)
    let waiter = (): void => {}
    const found = new Promise<T>((resolve) => {
      waiter = () => {
        const value = check()
        if (value !== undefined) resolve(value)
      }
      this.#waiters.add(waiter)
    })
    return withTimeout(found, ms, 'output').then(
      (value) => {
        this.#waiters.delete(waiter)
        return value
      },
      () => {
        this.#waiters.delete(waiter)
        throw new Error(`timed out after ${ms} ms waiting for ${what()}`)
      }
    )
  }
}

/** Things as they arrive (connections, sockets), and a bounded wait for the next one. */
class Arrivals<T> {
  #ready: T[] = []
  #waiters: ((item: T) => void)[] = []

  push(item: T): void {
    const waiter = this.#waiters.shift()
    if (waiter) waiter(item)
    else this.#ready.push(item)
  }

  next(ms: number, what: string): Promise<T> {
    const ready = this.#ready.shift()
    if (ready !== undefined) return Promise.resolve(ready)
    let waiter: (item: T) => void = () => {}
    const arrived = new Promise<T>((resolve) => {
      waiter = resolve
      this.#waiters.push(resolve)
    })
    return withTimeout(arrived, ms, what).catch((error: unknown) => {
      this.#waiters = this.#waiters.filter((w) => w !== waiter)
      throw error
    })
  }
}

interface MainRun {
  exit: Promise<number>
  stdin: PassThrough
  stdout: Transcript
  stderr: Transcript
  stdoutEnded: Promise<void>
  interrupt(reason?: string): void
  /** The exit status within `ms`. */
  status(ms?: number): Promise<number>
}

/** Runs main() with PassThrough stdio; interrupted and awaited in cleanup. */
function runMain(argv: string[], io: Partial<CliIo> = {}): MainRun {
  const stdin = new PassThrough()
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const controller = new AbortController()
  const stdoutEnded = new Promise<void>((resolve) => stdout.once('end', resolve))
  const run: MainRun = {
    exit: main(argv, { stdin, stdout, stderr, signal: controller.signal, ...io }),
    stdin,
    stdout: new Transcript(stdout),
    stderr: new Transcript(stderr),
    stdoutEnded,
    interrupt: (reason = 'SIGINT') => controller.abort(reason),
    status: (ms = 5000) => withTimeout(run.exit, ms, `ws-duplex ${argv.join(' ')} to exit`)
  }
  cleanup.add(async () => {
    controller.abort('SIGINT')
    await run.status().catch(() => undefined)
  })
  return run
}

/** Starts `ws-duplex listen|bridge ...` in-process and returns its listening address. */
async function startServerMain(argv: string[]): Promise<{ run: MainRun; address: string }> {
  const run = runMain(argv)
  const [, address] = await run.stderr.waitFor(/listening on (\S+?),?(?: |\n)/)
  return { run, address: address ?? '' }
}

async function wsServer(
  options: ServerOptions = {}
): Promise<{ server: WsDuplexServer; url: string; next(ms?: number): Promise<WsDuplex> }> {
  const connections = new Arrivals<WsDuplex>()
  const server = await createServer({ host: '127.0.0.1', port: 0, ...options }, (duplex) => {
    duplex.on('error', () => {})
    connections.push(duplex)
  })
  cleanup.add(() => server.close())
  const { port } = server.address() as AddressInfo
  return {
    server,
    url: `ws://127.0.0.1:${port}`,
    next: (ms = 3000) => connections.next(ms, 'a WebSocket connection')
  }
}

/** A TCP server on 127.0.0.1; `next()` resolves with each accepted socket. */
async function tcpServer(
  onSocket: (socket: Socket) => void = () => {}
): Promise<{ port: number; next(ms?: number): Promise<Socket> }> {
  const sockets = new Set<Socket>()
  const arrivals = new Arrivals<Socket>()
  const server = createTcpServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onSocket(socket)
    arrivals.push(socket)
  })
  server.listen(0, '127.0.0.1')
  await onceWithin(server, 'listening')
  cleanup.add(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    port: (server.address() as AddressInfo).port,
    next: (ms = 3000) => arrivals.next(ms, 'a TCP connection')
  }
}

async function tcpClient(port: number): Promise<Socket> {
  const socket = tcpConnect({ host: '127.0.0.1', port, allowHalfOpen: true })
  cleanup.add(() => {
    socket.destroy()
  })
  await onceWithin(socket, 'connect')
  return socket
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createTcpServer()
  server.listen(0, '127.0.0.1')
  await onceWithin(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * A port whose TCP connects hang: a listener with a backlog of 1 in a worker thread whose event
 * loop is blocked, so nothing is accepted, with its queue filled. Linux then drops further SYNs,
 * as from a host that does not answer. The worker is released in cleanup.
 */
async function stalledPort(): Promise<number> {
  const release = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(
    `const { createServer } = require('node:net')
    const { parentPort, workerData } = require('node:worker_threads')
    const server = createServer()
    server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
      parentPort.postMessage(server.address().port)
      Atomics.wait(workerData, 0, 0)
      server.close()
    })`,
    { eval: true, workerData: release }
  )
  cleanup.add(async () => {
    Atomics.store(release, 0, 1)
    Atomics.notify(release, 0)
    await once(worker, 'exit')
  })
  const [port] = (await onceWithin(worker, 'message')) as [number]
  // Loopback handles each SYN as it is sent, so these fill the queue before anyone else comes.
  for (let i = 0; i < 4; i++) {
    const filler = tcpConnect({ host: '127.0.0.1', port })
    filler.on('error', () => {})
    cleanup.add(() => {
      filler.destroy()
    })
  }
  return port
}

/** Reads a TCP socket until its FIN, bounded; rejects on a socket error. */
function readToEnd(socket: Socket, ms = 5000): Promise<Buffer> {
  const chunks: Buffer[] = []
  const done = new Promise<Buffer>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', () => resolve(Buffer.concat(chunks)))
    socket.once('error', reject)
  })
  return withTimeout(done, ms, 'the TCP FIN')
}

function socketError(socket: Socket, ms = 3000): Promise<NodeJS.ErrnoException> {
  return onceWithin<[NodeJS.ErrnoException]>(socket, 'error', ms).then(([error]) => error)
}

function closingOf(duplex: WsDuplex, ms = 3000): Promise<ClosingInfo> {
  return onceWithin<[ClosingInfo]>(duplex.events, 'closing', ms).then(([info]) => info)
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ws-duplex-cli-'))
  cleanup.add(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** The one line main() printed for a failure. */
function errorLine(stderr: Transcript): string {
  const lines = stderr.text.split('\n').filter((line) => line !== '')
  return lines.at(-1) ?? ''
}

// ------------------------------------------------------------------------ the real bin

interface BinRun {
  child: ChildProcess
  stdout: Transcript
  stderr: Transcript
  exit(ms?: number): Promise<number | null>
}

function runBin(args: string[], stdin: 'pipe' | number = 'pipe'): BinRun {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: root,
    stdio: [stdin, 'pipe', 'pipe']
  })
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code))
  })
  cleanup.add(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await withTimeout(exited, 5000, 'the bin to exit').catch(() => undefined)
  })
  return {
    child,
    stdout: new Transcript(child.stdout as NodeJS.ReadableStream),
    stderr: new Transcript(child.stderr as NodeJS.ReadableStream),
    exit: (ms = 10_000) => withTimeout(exited, ms, `ws-duplex ${args.join(' ')} to exit`)
  }
}

async function startServerBin(args: string[]): Promise<{ run: BinRun; address: string }> {
  const run = runBin(args)
  const [, address] = await run.stderr.waitFor(/listening on (\S+?),?(?: |\n)/, 5000)
  return { run, address: address ?? '' }
}

/** Builds dist/ when a lib file is newer than its output (npm test builds in pretest). */
async function ensureBuilt(): Promise<void> {
  const libDir = join(root, 'lib')
  const stale = readdirSync(libDir)
    .filter((name) => name.endsWith('.ts'))
    .some((name) => {
      const out = join(root, 'dist', name.replace(/\.ts$/, '.js'))
      try {
        return statSync(out).mtimeMs < statSync(join(libDir, name)).mtimeMs
      } catch {
        return true
      }
    })
  if (!stale) return
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: root }, (error, stdout) => {
      if (error) reject(new Error(`the build failed: ${stdout}`))
      else resolve()
    })
  })
}

// ------------------------------------------------------------------------------- tests

describe('ws-duplex CLI', () => {
  describe('usage', () => {
    it('--help prints the usage with every command, option and exit status', async () => {
      const run = runMain(['--help'])
      expect(await run.status()).to.equal(0)
      const usage = run.stdout.text
      for (const word of ['connect <ws-url>', 'listen', 'bridge', '--on-eof', 'Exit status']) {
        expect(usage).to.include(word)
      }
      for (const option of ['header', 'protocol', 'origin', 'ca', 'insecure', 'keepalive']) {
        expect(usage).to.include(`--${option}`)
      }
      for (const option of ['close-timeout', 'connect-timeout', 'max-payload', 'no-progress']) {
        expect(usage).to.include(`--${option}`)
      }
      for (const option of ['quiet', 'version']) {
        expect(usage).to.include(`--${option}`)
      }
    })

    for (const argv of [['--help'], ['--version']]) {
      it(`${argv[0]}: a failing stdout is one error line and exit 1, not a crash`, async () => {
        const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })
        const stdout = new Writable({ write: (_chunk, _encoding, callback) => callback(epipe) })
        const run = runMain(argv, { stdout })
        expect(await run.status()).to.equal(ExitCode.Abnormal)
        expect(run.stderr.text).to.match(/^ws-duplex: stdout: write EPIPE \(EPIPE\)\n$/)
      })
    }

    it('--version prints the version from package.json', async () => {
      const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
        version: string
      }
      const run = runMain(['--version'])
      expect(await run.status()).to.equal(0)
      expect(run.stdout.text).to.equal(`${version}\n`)
    })

    const mistakes: [string[], RegExp][] = [
      [[], /expected a command/],
      [['fetch', 'ws://x'], /unknown command 'fetch'/],
      [['connect'], /expected connect <ws-url>, got none/],
      [['connect', 'ws://a', 'ws://b'], /expected connect <ws-url>/],
      [['connect', 'not a url'], /is not a URL/],
      [['connect', 'http://127.0.0.1/'], /expected a ws:\/\/ or wss:\/\/ URL/],
      [['connect', 'ws://127.0.0.1/#x'], /fragment/],
      [['connect', '--bogus', 'ws://127.0.0.1/'], /unknown option '--bogus'/],
      [['connect', '--keepalive', '0', 'ws://127.0.0.1/'], /--keepalive expects an integer/],
      [['connect', '--close-timeout', '1s', 'ws://127.0.0.1/'], /--close-timeout expects/],
      [['connect', '--max-payload', '-1', 'ws://127.0.0.1/'], /max-payload/],
      [['connect', '--connect-timeout', '0', 'ws://127.0.0.1/'], /--connect-timeout expects/],
      [['listen', '--connect-timeout', '100', '0'], /--connect-timeout cannot be used with listen/],
      [['connect', '--on-eof', 'later', 'ws://127.0.0.1/'], /--on-eof expects close, wait/],
      [['connect', '--header', 'NoColon', 'ws://127.0.0.1/'], /--header expects "Name: value"/],
      [['connect', '--protocol', 'a b', 'ws://127.0.0.1/'], /--protocol expects a token/],
      [['connect', '--protocol', 'a', '--protocol', 'a', 'ws://127.0.0.1/'], /given twice/],
      [
        ['bridge', 'tcp://127.0.0.1:0', 'ws://127.0.0.1:1/', '--protocol', 'a', '--protocol', 'a'],
        /given twice/
      ],
      [['connect', '--header', 'X-A: €', 'ws://127.0.0.1/'], /character HTTP does not allow/],
      [
        ['bridge', 'tcp://127.0.0.1:0', 'ws://127.0.0.1:1/', '--header', 'X-A: \u0007'],
        /character HTTP does not allow/
      ],
      [['connect', '--echo', 'ws://127.0.0.1/'], /--echo cannot be used with connect/],
      [['connect', '--ca', '/nonexistent/ca.pem', 'wss://127.0.0.1/'], /--ca: cannot read/],
      [['listen', '70000'], /expected a port from 0 to 65535/],
      [['listen', 'host:port:x'], /expected \[host:\]port/],
      [['listen', 'wss://127.0.0.1:1/'], /cannot listen with wss/],
      [['listen', '--echo', '--exec', 'cat', '0'], /--echo and --exec cannot be used together/],
      [['listen', '--echo', '--on-eof', 'wait', '0'], /--on-eof applies to listen with stdio/],
      [['listen', '--header', 'A: b', '0'], /--header cannot be used with listen/],
      [['bridge', 'tcp://127.0.0.1:1'], /expected bridge <from> <to>/],
      [['bridge', 'tcp://127.0.0.1:1', 'tcp://127.0.0.1:2'], /expected ws:\/\/\.\.\. tcp/],
      [['bridge', 'ws://127.0.0.1:0', 'tcp://127.0.0.1'], /expected tcp:\/\/host:port/],
      [['bridge', 'tcp://127.0.0.1:0?x=1', 'ws://127.0.0.1:1/'], /expected tcp:\/\/host:port/],
      [['listen', '0', '--exec', '--echo'], /--exec needs a value; .* as --exec=<value> /],
      [['listen', '0', '-e', '--echo'], /-e needs a value; .* as --exec=<value> /],
      [['bridge', 'ws://127.0.0.1:0', 'tcp://127.0.0.1:22', '--insecure'], /--insecure/],
      // Not ASCII: Node would refuse the header only when connecting (each bridged client).
      [['connect', '-o', 'https://例え.jp', 'ws://127.0.0.1:1/'], /--origin expects an ASCII/],
      [
        ['bridge', 'tcp://127.0.0.1:0', 'ws://127.0.0.1:1/', '-o', 'https://例え.jp'],
        /--origin expects an ASCII/
      ],
      [['listen', '0', '--origin', 'https://a .example'], /--origin expects an ASCII/]
    ]
    for (const [argv, message] of mistakes) {
      it(`exits with 2 and one line for: ${JSON.stringify(argv)}`, async () => {
        const run = runMain(argv)
        expect(await run.status()).to.equal(ExitCode.Usage)
        expect(run.stderr.text.split('\n')).to.have.length(2)
        expect(run.stderr.text)
          .to.match(message)
          .and.match(/\(ERR_USAGE\); see ws-duplex --help\n$/)
        expect(run.stdout.text).to.equal('')
      })
    }
  })

  describe('connect', () => {
    it('carries stdin and stdout byte for byte and exits 0 after a clean close', async () => {
      const toClient = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      const { url, next } = await wsServer()
      const run = runMain(['connect', url])
      const server = await next()
      const serverGot = collect(server)
      const closing = closingOf(server)
      server.write(toClient)
      await run.stdout.waitForBytes(toClient.length)
      const toServer = patternBytes(300_000, 7)
      run.stdin.end(toServer)
      expect(await run.status()).to.equal(0)
      expect((await serverGot).equals(toServer)).to.equal(true)
      expect(run.stdout.bytes.equals(toClient)).to.equal(true)
      await run.stdoutEnded
      // --on-eof close (the default): the end of stdin sent the close frame, with 1000.
      expect(await closing).to.include({ code: 1000, initiator: 'remote' })
      expect(run.stderr.text).to.equal('')
    })

    it('exits 1 when bytes read from stdin could not be sent because the peer closed first', async () => {
      const { url, next } = await wsServer()
      // A stdout slow to finish (a pipe, say) keeps the session open after the clean close.
      let finalCalled: () => void = () => {}
      const finishing = new Promise<void>((resolve) => (finalCalled = resolve))
      let releaseFinal: () => void = () => {}
      const stdout = new Writable({
        write(_chunk, _encoding, callback) {
          callback()
        },
        final(callback) {
          releaseFinal = callback
          finalCalled()
        }
      })
      const run = runMain(['connect', url], { stdout })
      const server = await next()
      server.resume()
      await withTimeout(server.close(), 3000, "the server's close")
      await withTimeout(finishing, 3000, "stdout's final()")
      run.stdin.write(Buffer.from('too late'))
      releaseFinal()
      expect(await run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(run.stderr)).to.match(
        /8 bytes read from stdin were not sent: the peer closed first \(ERR_STREAM_CLOSED, close code 1000\)$/
      )
    })

    it('--on-eof wait: the peer answers after the whole request and closes; exit 0', async () => {
      const request = patternBytes(100_000, 3)
      const reply = patternBytes(200_000, 4)
      const { url, next } = await wsServer()
      const run = runMain(['connect', '--on-eof', 'wait', url])
      const server = await next()
      const closing = closingOf(server)
      run.stdin.end(request)
      const chunks: Buffer[] = []
      let received = 0
      await withTimeout(
        new Promise<void>((resolve) => {
          server.on('data', (chunk: Buffer) => {
            chunks.push(chunk)
            received += chunk.length
            if (received >= request.length) resolve()
          })
        }),
        3000,
        'the whole request'
      )
      expect(Buffer.concat(chunks).equals(request)).to.equal(true)
      server.end(reply)
      expect(await run.status()).to.equal(0)
      expect(run.stdout.bytes.equals(reply)).to.equal(true)
      // The server closed first: the client had sent no close frame on stdin EOF.
      expect(await closing).to.include({ code: 1000, initiator: 'local' })
    })

    it('--on-eof echoed: closes once everything sent has come back from listen --echo', async () => {
      const { address } = await startServerMain(['listen', '--echo', '127.0.0.1:0'])
      const payload = patternBytes(3 * 1024 * 1024, 9)
      const run = runMain(['connect', '--on-eof', 'echoed', address])
      run.stdin.end(payload)
      expect(await run.status()).to.equal(0)
      expect(run.stdout.bytes.equals(payload)).to.equal(true)
    })

    it('exits 1 with ERR_ABNORMAL_CLOSURE when the server resets the connection', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const run = runMain(['connect', raw.url])
      const peer = await raw.nextPeer()
      peer.sendBinary(Buffer.from('partial'))
      await run.stdout.waitFor(/partial/)
      peer.reset()
      expect(await run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(run.stderr)).to.match(
        /^ws-duplex: ws:\/\/127\.0\.0\.1:\d+\/: .*\(ERR_ABNORMAL_CLOSURE, close code 1006\)$/
      )
      // The WebSocket failed, not stdout (which the pipeline tears down with the same error).
      expect(errorLine(run.stderr)).to.not.include('stdout')
      expect(run.stdout.text).to.equal('partial')
    })

    it("labels stdout's own write error as stdout's", async () => {
      const { url, next } = await wsServer()
      const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })
      const stdout = new Writable({ write: (_chunk, _encoding, callback) => callback(epipe) })
      const run = runMain(['connect', url, '--on-eof', 'wait'], { stdout })
      ;(await next()).write(Buffer.from('bytes for a closed pipe'))
      expect(await run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(run.stderr)).to.match(/: stdout: write EPIPE/)
    })

    it('exits 1 with ERR_PEER_CLOSED_WITH_ERROR when the server closes with 1011', async () => {
      const { url, next } = await wsServer()
      const run = runMain(['connect', url])
      const server = await next()
      await server.close(1011, 'boom')
      expect(await run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(run.stderr)).to.match(/\(ERR_PEER_CLOSED_WITH_ERROR, close code 1011\)$/)
      expect(errorLine(run.stderr)).to.not.include('stdout')
    })

    it('exits 3 with ERR_CONNECT_FAILED when the connection is refused', async () => {
      const port = await closedPort()
      const run = runMain(['connect', `ws://127.0.0.1:${port}/`])
      expect(await run.status()).to.equal(ExitCode.CouldNotConnect)
      expect(run.stderr.text).to.match(/ECONNREFUSED.*\(ERR_CONNECT_FAILED\)\n$/)
      expect(run.stderr.text.split('\n')).to.have.length(2)
    })

    it('--connect-timeout: exits 3 with ERR_CONNECT_TIMEOUT when the upgrade is not answered', async () => {
      const { port, next } = await tcpServer()
      const run = runMain(['connect', '--connect-timeout', '200', `ws://127.0.0.1:${port}/`])
      await next()
      expect(await run.status()).to.equal(ExitCode.CouldNotConnect)
      expect(errorLine(run.stderr)).to.match(/within 200 ms \(ERR_CONNECT_TIMEOUT\)$/)
    })

    it('exits 3 with ERR_HANDSHAKE_REJECTED and the HTTP status', async () => {
      const { url } = await wsServer({ path: '/only' })
      const run = runMain(['connect', `${url}/other`])
      expect(await run.status()).to.equal(ExitCode.CouldNotConnect)
      expect(errorLine(run.stderr)).to.match(
        /: The server refused the WebSocket upgrade with HTTP 404 \(ERR_HANDSHAKE_REJECTED, HTTP 404\)$/
      )
    })

    it('sends --header, --origin and --protocol', async () => {
      let headers: Record<string, string | string[] | undefined> = {}
      const { url, next } = await wsServer({
        verifyClient: ({ req }) => {
          headers = req.headers
          return true
        },
        handleProtocols: (offered) => (offered.has('chat') ? 'chat' : false)
      })
      const run = runMain([
        'connect',
        '-H',
        'X-Token: abc',
        '--header',
        'x-token: def',
        '--origin',
        'https://app.example',
        '--protocol',
        'chat',
        '--on-eof',
        'wait',
        url
      ])
      const server = await next()
      expect(headers['x-token']).to.equal('abc, def')
      expect(headers.origin).to.equal('https://app.example')
      expect(server.socket.protocol).to.equal('chat')
      await server.close()
      expect(await run.status()).to.equal(0)
    })

    it('--keepalive: exits 1 with ERR_KEEPALIVE_TIMEOUT when the server stops answering', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const run = runMain(['connect', '--keepalive', '100', raw.url])
      await raw.nextPeer()
      expect(await run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(run.stderr)).to.match(/\(ERR_KEEPALIVE_TIMEOUT, close code 1006\)$/)
    })

    it('--close-timeout: exits 1 with ERR_CLOSE_TIMEOUT when the close is not answered', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const run = runMain(['connect', '--close-timeout', '100', raw.url])
      const peer = await raw.nextPeer()
      run.stdin.end('x')
      expect((await peer.readUntilClose()).close?.code).to.equal(1000)
      expect(await run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(run.stderr)).to.match(/\(ERR_CLOSE_TIMEOUT, close code 1006\)$/)
    })

    it('--max-payload: exits 1 with ERR_PAYLOAD_TOO_LARGE for a bigger message', async () => {
      const { url, next } = await wsServer()
      const run = runMain(['connect', '--max-payload', '1024', url])
      const server = await next()
      server.write(Buffer.alloc(2048))
      expect(await run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(run.stderr)).to.match(/\(ERR_PAYLOAD_TOO_LARGE, close code 1009\)$/)
    })

    it('interrupted while sending: closes with 1011, not a clean 1001, and exits 130 (143 for SIGTERM)', async () => {
      const { url, next } = await wsServer()
      for (const [reason, status] of [
        ['SIGINT', 130],
        ['SIGTERM', 143]
      ] as const) {
        const run = runMain(['connect', url])
        const server = await next()
        const closing = closingOf(server)
        server.resume()
        // Once the client is open (an interrupt while connecting just abandons the attempt).
        server.write('ready')
        await run.stdout.waitFor(/ready/)
        run.interrupt(reason)
        expect(await run.status()).to.equal(status)
        // stdin had not ended: what the peer received is cut short.
        expect(await closing).to.include({ code: 1011, initiator: 'remote' })
      }
    })

    it('interrupted after stdin ended (--on-eof wait): closes with 1001, everything was sent', async () => {
      const { url, next } = await wsServer()
      const run = runMain(['connect', '--on-eof', 'wait', url])
      const server = await next()
      const closing = closingOf(server)
      const received = collect(server)
      run.stdin.end('all of it')
      server.write('ready')
      await run.stdout.waitFor(/ready/)
      run.interrupt()
      expect(await run.status()).to.equal(130)
      expect(await closing).to.include({ code: 1001, initiator: 'remote' })
      expect((await received).toString()).to.equal('all of it')
    })

    it("a receiver does not exit 0 on a transfer cut by the sender's interrupt", async () => {
      const receiver = await startServerMain(['listen', '127.0.0.1:0'])
      const sender = runMain(['connect', receiver.address])
      sender.stdin.write(Buffer.alloc(64 * 1024, 'a'))
      await receiver.run.stdout.waitFor(/a/)
      sender.interrupt()
      expect(await sender.status()).to.equal(130)
      expect(await receiver.run.status()).to.equal(ExitCode.Abnormal)
      expect(errorLine(receiver.run.stderr)).to.match(/close code 1011\)$/)
    })

    describe('TLS', () => {
      async function tlsServer(): Promise<{ url: string; caFile: string }> {
        const https = createHttpsServer({ key: TLS_KEY, cert: TLS_CERT })
        https.listen(0, '127.0.0.1')
        await onceWithin(https, 'listening')
        const server = await createServer({ server: https }, (duplex) => {
          duplex.on('error', () => {})
          duplex.end('secure')
        })
        cleanup.add(async () => {
          await server.close()
          await new Promise<void>((resolve) => https.close(() => resolve()))
        })
        const caFile = join(await tempDir(), 'ca.pem')
        await writeFile(caFile, TLS_CERT)
        const { port } = https.address() as AddressInfo
        return { url: `wss://127.0.0.1:${port}/`, caFile }
      }

      it('exits 3 with the certificate error when the server is not trusted', async () => {
        const { url } = await tlsServer()
        const run = runMain(['connect', url])
        expect(await run.status()).to.equal(ExitCode.CouldNotConnect)
        expect(errorLine(run.stderr)).to.match(
          /self-signed certificate \[DEPTH_ZERO_SELF_SIGNED_CERT\] \(ERR_CONNECT_FAILED\); see --ca and --insecure$/
        )
      })

      it('--ca <file> trusts the server', async () => {
        const { url, caFile } = await tlsServer()
        const run = runMain(['connect', '--ca', caFile, '--on-eof', 'wait', url])
        expect(await run.status()).to.equal(0)
        expect(run.stdout.text).to.equal('secure')
      })

      it('--insecure skips the verification', async () => {
        const { url } = await tlsServer()
        const run = runMain(['connect', '-k', '--on-eof', 'wait', url])
        expect(await run.status()).to.equal(0)
        expect(run.stdout.text).to.equal('secure')
      })
    })
  })

  describe('progress and notices', () => {
    async function session(argv: string[], io: Partial<CliIo> = {}): Promise<MainRun> {
      const { url, next } = await wsServer()
      const run = runMain([...argv, '--on-eof', 'wait', url], io)
      const server = await next()
      server.resume()
      server.end(Buffer.alloc(1000))
      expect(await run.status()).to.equal(0)
      return run
    }

    it('--progress reports the bytes on stderr', async () => {
      const run = await session(['connect', '--progress'])
      expect(run.stderr.text).to.match(/^ws-duplex: [\d.]+ s, sent 0 bytes .*received 1000 bytes/)
    })

    it('is on by default only when stderr is a terminal, and --no-progress turns it off', async () => {
      expect((await session(['connect'])).stderr.text).to.equal('')
      const tty = await session(['connect'], { stderrIsTTY: true })
      expect(tty.stderr.text).to.match(/received 1000 bytes/)
      const off = await session(['connect', '--no-progress'], { stderrIsTTY: true })
      expect(off.stderr.text).to.equal('')
      const last = await session(['connect', '--no-progress', '--progress'])
      expect(last.stderr.text).to.match(/received 1000 bytes/)
    })

    it('--quiet hides the notices of a server, but for the address port 0 picked', async () => {
      const { run, address } = await startServerMain(['listen', '--echo', '--quiet', '127.0.0.1:0'])
      expect(address).to.match(/^ws:\/\/127\.0\.0\.1:\d+\/$/)
      const echo = runMain(['connect', '--on-eof', 'echoed', address])
      echo.stdin.end(Buffer.from('hi'))
      expect(await echo.status()).to.equal(0)
      run.interrupt()
      expect(await run.status()).to.equal(130)
      expect(run.stderr.text).to.equal(`ws-duplex: listening on ${address}\n`)
    })
  })

  describe('listen', () => {
    it('keeps serving when the reader of its stderr goes away (EPIPE)', async () => {
      const { run, address } = await startServerBin(['listen', '--echo', '127.0.0.1:0'])
      run.child.stderr?.destroy()
      for (const payload of [Buffer.from('first'), Buffer.from('second')]) {
        const echo = runMain(['connect', '--on-eof', 'echoed', address])
        echo.stdin.end(payload)
        expect(await echo.status()).to.equal(0)
        expect(echo.stdout.bytes.equals(payload)).to.equal(true)
      }
      expect(run.child.exitCode).to.equal(null)
      run.child.kill('SIGINT')
      expect(await run.exit()).to.equal(ExitCode.Interrupted)
    })

    it('stdio: one connection on stdin/stdout, then exits 0; others get 503 meanwhile', async () => {
      const { run, address } = await startServerMain(['listen', '--on-eof', 'wait', '127.0.0.1:0'])
      expect(address).to.match(/^ws:\/\/127\.0\.0\.1:\d+\/$/)
      const client = await connect(address)
      client.on('error', () => {})
      const second = await connect(address).then(
        () => undefined,
        (error: unknown) => error
      )
      expect(second).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 503 })
      run.stdin.end('from the server')
      const fromClient = patternBytes(50_000, 5)
      const got = collect(client)
      client.end(fromClient)
      expect((await got).toString()).to.equal('from the server')
      expect(await run.status()).to.equal(0)
      expect(run.stdout.bytes.equals(fromClient)).to.equal(true)
    })

    it('--echo: serves many connections at once, until interrupted (130)', async () => {
      const { run, address } = await startServerMain(['listen', '--echo', '127.0.0.1:0'])
      const payloads = [1, 2, 3, 4, 5].map((seed) => patternBytes(200_000 + seed, seed))
      const echoed = await Promise.all(
        payloads.map(async (payload) => {
          const echo = runMain(['connect', '--on-eof', 'echoed', address])
          echo.stdin.end(payload)
          expect(await echo.status()).to.equal(0)
          return echo.stdout.bytes
        })
      )
      echoed.forEach((bytes, i) =>
        expect(bytes.equals(payloads[i] as Buffer), `#${i}`).to.equal(true)
      )
      run.interrupt()
      expect(await run.status()).to.equal(130)
      expect(run.stderr.text.match(/ closed\n/g)).to.have.length(5)
    })

    it('--echo: an interrupt closes the open connections with 1011: their echo is cut', async () => {
      const { run, address } = await startServerMain(['listen', '--echo', '127.0.0.1:0'])
      const client = await connect(address)
      client.on('error', () => {})
      const closing = closingOf(client)
      client.resume()
      run.interrupt('SIGTERM')
      expect(await closing).to.include({ code: 1011, initiator: 'remote' })
      expect(await run.status()).to.equal(143)
    })

    it('--exec: wires each connection to a command, like inetd', async () => {
      const { address } = await startServerMain(['listen', '--exec', 'cat', '127.0.0.1:0'])
      const payload = patternBytes(500_000, 11)
      const run = runMain(['connect', '--on-eof', 'echoed', address])
      run.stdin.end(payload)
      expect(await run.status()).to.equal(0)
      expect(run.stdout.bytes.equals(payload)).to.equal(true)
    })

    it('--exec: the exit status ends the connection (0: 1000, else 1011)', async () => {
      const command =
        'printf "%s|%s" "$WS_DUPLEX_PATH" "$WS_DUPLEX_QUERY"; [ "$WS_DUPLEX_PATH" = /ok ] || exit 3'
      const { address } = await startServerMain(['listen', '--exec', command, '127.0.0.1:0'])
      const ok = runMain(['connect', '--on-eof', 'wait', `${address}ok?token=t`])
      expect(await ok.status()).to.equal(0)
      expect(ok.stdout.text).to.equal('/ok|token=t')
      const failed = runMain(['connect', '--on-eof', 'wait', `${address}bad`])
      expect(await failed.status()).to.equal(ExitCode.Abnormal)
      expect(failed.stdout.text).to.equal('/bad|')
      expect(errorLine(failed.stderr)).to.match(/\(ERR_PEER_CLOSED_WITH_ERROR, close code 1011\)$/)
    })

    it('--exec: a command that fails after the connection closed is reported as failed', async () => {
      // It reads to the end of its input (the client's close), then fails: no clean session.
      const command = 'cat > /dev/null; exit 7'
      const { run, address } = await startServerMain(['listen', '--exec', command, '127.0.0.1:0'])
      const client = runMain(['connect', address])
      client.stdin.end('input')
      expect(await client.status()).to.equal(0)
      await run.stderr.waitFor(/#1 \S+ failed: the command exited with 7\n/)
      expect(run.stderr.text).to.not.match(/#1 \S+ closed\n/)
    })

    it('--exec: an interrupt ends the commands with their process groups, SIGKILL if they ignore SIGTERM', async function () {
      this.timeout(15_000)
      const dir = await mkdtemp(join(tmpdir(), 'ws-duplex-exec-'))
      cleanup.add(() => rm(dir, { recursive: true, force: true }))
      const pids = join(dir, 'pids')
      // The shell ignores SIGTERM, and so does the sleep it starts (ignored signals are inherited).
      const command = `trap '' TERM; sleep 30 & echo "$$ $!" > '${pids}'; wait`
      const { run, address } = await startServerMain(['listen', '--exec', command, '127.0.0.1:0'])
      const client = runMain(['connect', '--on-eof', 'wait', address])
      let started: number[] = []
      await until(
        () => {
          try {
            started = readFileSync(pids, 'utf8').trim().split(' ').map(Number)
          } catch {
            return false
          }
          return started.length === 2
        },
        'the command to start',
        5000,
        20
      )
      const alive = (pid: number): boolean => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      }
      run.interrupt()
      expect(await run.status(10_000)).to.equal(ExitCode.Interrupted)
      await until(() => !started.some(alive), 'the command and its child to be gone', 3000, 20)
      // The command's output was cut short (1011): the client does not claim it complete.
      expect(await client.status()).to.equal(ExitCode.Abnormal)
    })

    it('--exec: an interrupt also ends what a command left running after it exited', async function () {
      this.timeout(15_000)
      const dir = await mkdtemp(join(tmpdir(), 'ws-duplex-exec-'))
      cleanup.add(() => rm(dir, { recursive: true, force: true }))
      const pidFile = join(dir, 'pid')
      const command = `sleep 30 </dev/null >/dev/null 2>&1 & echo $! > '${pidFile}'; echo started`
      const { run, address } = await startServerMain(['listen', '--exec', command, '127.0.0.1:0'])
      const client = runMain(['connect', '--on-eof', 'wait', address])
      expect(await client.status()).to.equal(0)
      expect(client.stdout.text).to.equal('started\n')
      const pid = Number(readFileSync(pidFile, 'utf8'))
      const alive = (): boolean => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      }
      expect(alive()).to.equal(true)
      run.interrupt()
      expect(await run.status(10_000)).to.equal(ExitCode.Interrupted)
      await until(() => !alive(), 'the background job to be gone', 3000, 20)
    })

    it('--exec: what an exited command left running gets the same grace before SIGKILL', async function () {
      this.timeout(15_000)
      const dir = await mkdtemp(join(tmpdir(), 'ws-duplex-exec-'))
      cleanup.add(() => rm(dir, { recursive: true, force: true }))
      const log = join(dir, 'log')
      const ready = join(dir, 'ready')
      // A background job that needs half a second to clean up after SIGTERM. It says when its
      // trap is set: until then a SIGTERM kills it with nothing written.
      const job = `trap 'sleep 0.5; echo cleaned > "${log}"; exit 0' TERM; : > "${ready}"; while :; do sleep 0.1; done`
      const command = `sh -c '${job.replace(/'/g, `'\\''`)}' </dev/null >/dev/null 2>&1 & echo started`
      const { run, address } = await startServerMain(['listen', '--exec', command, '127.0.0.1:0'])
      const client = runMain(['connect', '--on-eof', 'wait', address])
      expect(await client.status()).to.equal(0)
      await until(() => existsSync(ready), 'the job to set its TERM trap', 5000, 20)
      run.interrupt()
      expect(await run.status(10_000)).to.equal(ExitCode.Interrupted)
      expect(readFileSync(log, 'utf8')).to.equal('cleaned\n')
    })

    it('--origin allows only the given origins', async () => {
      const { address } = await startServerMain([
        'listen',
        '--echo',
        '--origin',
        'https://good.example',
        '127.0.0.1:0'
      ])
      const bad = runMain(['connect', '--origin', 'https://evil.example', address])
      expect(await bad.status()).to.equal(ExitCode.CouldNotConnect)
      expect(errorLine(bad.stderr)).to.match(/HTTP 403/)
      const good = runMain(['connect', '--origin', 'https://good.example', address])
      good.stdin.end()
      expect(await good.status()).to.equal(0)
    })

    it('exits 3 when the address is in use', async () => {
      const { address } = await startServerMain(['listen', '--echo', '127.0.0.1:0'])
      const port = new URL(address).port
      const run = runMain(['listen', '--echo', `127.0.0.1:${port}`])
      expect(await run.status()).to.equal(ExitCode.CouldNotConnect)
      expect(errorLine(run.stderr)).to.match(/EADDRINUSE/)
    })
  })

  describe('bridge ws:// to tcp://', () => {
    async function bridgeTo(tcpPort: number): Promise<string> {
      const { address } = await startServerMain([
        'bridge',
        'ws://127.0.0.1:0',
        `tcp://127.0.0.1:${tcpPort}`
      ])
      return address
    }

    it('accepts the websockify "binary" subprotocol and carries bytes both ways', async () => {
      const { port } = await tcpServer((socket) => socket.pipe(socket))
      const client = await connect(await bridgeTo(port), { protocols: ['binary'] })
      expect(client.socket.protocol).to.equal('binary')
      const payload = patternBytes(400_000, 2)
      const got = new Transcript(client)
      client.write(payload)
      expect((await got.waitForBytes(payload.length)).equals(payload)).to.equal(true)
      client.destroy()
    })

    it('a TCP FIN becomes a close with 1000, and a clean close a TCP FIN', async () => {
      const { port, next } = await tcpServer()
      const address = await bridgeTo(port)
      const client = await connect(address)
      const closing = closingOf(client)
      ;(await next()).end('bye')
      expect((await collect(client)).toString()).to.equal('bye')
      expect(await closing).to.include({ code: 1000, initiator: 'remote' })

      const second = await connect(address)
      const tcp = await next()
      const received = readToEnd(tcp)
      second.end('hello')
      second.resume()
      expect((await received).toString()).to.equal('hello')
    })

    it('a TCP reset becomes 1011, and a failed WebSocket a TCP reset', async () => {
      const { port, next } = await tcpServer()
      const address = await bridgeTo(port)
      const first = await connect(address)
      const tcp = await next()
      tcp.resetAndDestroy()
      const error = await streamError(first)
      expect(error).to.include({ code: 'ERR_PEER_CLOSED_WITH_ERROR', closeCode: 1011 })
      expect(first.closeInfo?.reason).to.equal('tcp ECONNRESET')

      const second = await connect(address)
      second.on('error', () => {})
      const reset = socketError(await next())
      second.socket.terminate()
      expect((await reset).code).to.equal('ECONNRESET')
    })

    it('--connect-timeout: a TCP target that does not answer refuses the upgrade with 502', async () => {
      const { run, address } = await startServerMain([
        'bridge',
        '--connect-timeout',
        '200',
        'ws://127.0.0.1:0',
        `tcp://127.0.0.1:${await stalledPort()}`
      ])
      const error = await connect(address).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 502 })
      await run.stderr.waitFor(/refused: tcp:\/\/127\.0\.0\.1:\d+: .*ETIMEDOUT/)
    })

    it('an unreachable TCP target refuses the upgrade with 502: a client never opens', async () => {
      const error = await connect(await bridgeTo(await closedPort())).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 502 })
    })

    it('a client that sends and closes at once does not exit 0 when the target fails to connect', async () => {
      // Before, the WebSocket was accepted first: its bytes and close were answered with 1000
      // while the TCP connect was still pending, then lost when it failed.
      const { address } = await startServerMain([
        'bridge',
        '--connect-timeout',
        '200',
        'ws://127.0.0.1:0',
        `tcp://127.0.0.1:${await stalledPort()}`
      ])
      const client = runMain(['connect', address])
      client.stdin.end('important bytes')
      expect(await client.status()).to.equal(ExitCode.CouldNotConnect)
      expect(errorLine(client.stderr)).to.match(/HTTP 502/)
    })

    it('a TCP connection made for a client that leaves during its upgrade is closed', async () => {
      const { port, next } = await tcpServer()
      const address = await bridgeTo(port)
      const url = new URL(address)
      // A handshake ws refuses (no valid key) after the TCP connection was made for it.
      const socket = tcpConnect(Number(url.port), '127.0.0.1')
      socket.on('error', () => {})
      socket.resume()
      await onceWithin(socket, 'connect')
      socket.write(upgradeRequest(Number(url.port), 'not a key'))
      const tcp = await next()
      tcp.resume()
      // The target sees the bridge's side end (its socket is otherwise held open for nothing).
      await onceWithin(tcp, 'end')
      await onceWithin(socket, 'close')
    })
  })

  describe('bridge tcp:// to ws://', () => {
    async function bridgeTo(url: string): Promise<number> {
      const { address } = await startServerMain(['bridge', 'tcp://127.0.0.1:0', url])
      return Number(/:(\d+)$/.exec(address)?.[1])
    }

    it('a TCP FIN becomes a close with 1000, a clean close a TCP FIN', async () => {
      const { url, next } = await wsServer()
      const tcp = await tcpClient(await bridgeTo(url))
      const server = await next()
      const closing = closingOf(server)
      server.write('pong')
      const fromServer = readToEnd(tcp)
      tcp.end('ping')
      expect((await collect(server)).toString()).to.equal('ping')
      expect(await closing).to.include({ code: 1000, initiator: 'remote' })
      expect((await fromServer).toString()).to.equal('pong')

      const tcp2 = await tcpClient(await bridgeTo(url))
      const server2 = await next()
      server2.end('bye')
      server2.resume()
      expect((await readToEnd(tcp2)).toString()).to.equal('bye')
    })

    it('a TCP reset becomes 1011; an abnormal WebSocket end a TCP reset', async () => {
      const { url, next } = await wsServer()
      const port = await bridgeTo(url)
      const tcp = await tcpClient(port)
      const server = await next()
      tcp.resetAndDestroy()
      expect(await streamError(server)).to.include({ closeCode: 1011 })

      const tcp2 = await tcpClient(port)
      const server2 = await next()
      const reset = socketError(tcp2)
      server2.socket.terminate()
      expect((await reset).code).to.equal('ECONNRESET')
    })

    it('--connect-timeout: a WebSocket upgrade not answered in time resets the TCP connection', async () => {
      const silent = await tcpServer()
      const { address } = await startServerMain([
        'bridge',
        '--connect-timeout',
        '200',
        'tcp://127.0.0.1:0',
        `ws://127.0.0.1:${silent.port}/`
      ])
      const tcp = await tcpClient(Number(/:(\d+)$/.exec(address)?.[1]))
      tcp.resume()
      await silent.next()
      expect((await socketError(tcp)).code).to.equal('ECONNRESET')
    })

    it('a refused WebSocket resets the TCP connection', async () => {
      const tcp = await tcpClient(await bridgeTo(`ws://127.0.0.1:${await closedPort()}/`))
      tcp.resume()
      expect((await socketError(tcp)).code).to.equal('ECONNRESET')
    })
  })

  describe('the real bin', function () {
    this.timeout(20_000)
    before(async function () {
      this.timeout(60_000)
      await ensureBuilt()
    })

    it('50 MiB from a file through connect to listen --echo, compared by sha256', async () => {
      const dir = await tempDir()
      const file = join(dir, 'input.bin')
      const size = 50 * 1024 * 1024
      const data = patternBytes(size, 13)
      await writeFile(file, data)
      const expected = createHash('sha256').update(data).digest('hex')

      const server = await startServerBin(['listen', '--echo', '127.0.0.1:0'])
      const fd = openSync(file, 'r')
      const client = runBin(['connect', '--on-eof', 'echoed', server.address], fd)
      closeSync(fd)
      const hash = createHash('sha256')
      let length = 0
      client.child.stdout?.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        length += chunk.length
      })
      expect(await client.exit(15_000)).to.equal(0)
      expect(length).to.equal(size)
      expect(hash.digest('hex')).to.equal(expected)

      server.run.child.kill('SIGTERM')
      expect(await server.run.exit()).to.equal(143)
    })

    it('a bridge chain TCP -> WS -> TCP to a TCP echo server, many connections at once', async () => {
      const { port: echoPort } = await tcpServer((socket) => socket.pipe(socket))
      const wsSide = await startServerBin([
        'bridge',
        'ws://127.0.0.1:0',
        `tcp://127.0.0.1:${echoPort}`
      ])
      const tcpSide = await startServerBin(['bridge', 'tcp://127.0.0.1:0', wsSide.address])
      const port = Number(/:(\d+)$/.exec(tcpSide.address)?.[1])
      const payloads = Array.from({ length: 8 }, (_, i) => patternBytes(256 * 1024 + i, i))
      await Promise.all(
        payloads.map(async (payload) => {
          const tcp = await tcpClient(port)
          const got = new Transcript(tcp)
          tcp.write(payload)
          expect((await got.waitForBytes(payload.length, 8000)).equals(payload)).to.equal(true)
          // Our FIN closes the WebSocket with 1000, whose clean close ends the echo's TCP and
          // comes back to us as a FIN.
          const ended = once(tcp, 'end')
          tcp.end()
          await withTimeout(ended, 5000, 'the FIN back through the chain')
        })
      )
      tcpSide.run.child.kill('SIGINT')
      wsSide.run.child.kill('SIGINT')
      expect(await tcpSide.run.exit()).to.equal(130)
      expect(await wsSide.run.exit()).to.equal(130)
      expect(wsSide.run.stderr.text.match(/ closed\n/g)).to.have.length(8)
    })

    it('exit codes: usage 2, refused 3, reset by the server 1', async () => {
      const usage = runBin(['connect'])
      const refused = runBin(['connect', `ws://127.0.0.1:${await closedPort()}/`])
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const reset = runBin(['connect', raw.url])
      const peer = await raw.nextPeer(5000)
      peer.reset()
      expect(await usage.exit()).to.equal(2)
      expect(await refused.exit()).to.equal(3)
      expect(await reset.exit()).to.equal(1)
      expect(usage.stderr.text).to.match(/^ws-duplex: .*\(ERR_USAGE\).*\n$/)
      expect(refused.stderr.text).to.match(/^ws-duplex: .*\(ERR_CONNECT_FAILED\)\n$/)
      expect(reset.stderr.text).to.match(
        /^ws-duplex: .*\(ERR_ABNORMAL_CLOSURE, close code 1006\)\n$/
      )
    })

    it('keeps its exit status when stderr has no reader left for the error it reports', async () => {
      const usage = runBin(['connect'])
      const refused = runBin(['connect', `ws://127.0.0.1:${await closedPort()}/`])
      usage.child.stderr?.destroy()
      refused.child.stderr?.destroy()
      expect(await usage.exit()).to.equal(2)
      expect(await refused.exit()).to.equal(3)
    })

    it('SIGHUP closes the connections (1011: cut short) and exits 129', async () => {
      const { run, address } = await startServerBin(['listen', '--echo', '127.0.0.1:0'])
      const client = await connect(address)
      client.on('error', () => {})
      const closing = closingOf(client, 5000)
      run.child.kill('SIGHUP')
      expect(await closing).to.include({ code: 1011, initiator: 'remote' })
      expect(await run.exit()).to.equal(ExitCode.HungUp)
    })

    it('a second SIGHUP (the kernel after the shell) does not cut the graceful close short', async () => {
      const { run, address } = await startServerBin(['listen', '--echo', '127.0.0.1:0'])
      const client = await connect(address)
      client.on('error', () => {})
      const closing = closingOf(client, 5000)
      run.child.kill('SIGHUP')
      run.child.kill('SIGHUP')
      expect(await closing).to.include({ code: 1011, initiator: 'remote' })
      expect(await run.exit()).to.equal(ExitCode.HungUp)
    })

    it('a directory on stdin is a read error (exit 1), not an empty input', async () => {
      const { url, next } = await wsServer()
      const directory = openSync(tmpdir(), 'r')
      cleanup.add(() => closeSync(directory))
      const client = runBin(['connect', url], directory)
      const server = await next(5000)
      server.resume()
      expect(await client.exit()).to.equal(ExitCode.Abnormal)
      expect(client.stderr.text).to.match(/stdin: EISDIR/)
    })

    it('SIGINT while sending closes with 1011 and exits 130', async () => {
      const { url, next } = await wsServer()
      const client = runBin(['connect', url])
      const server = await next(5000)
      const closing = closingOf(server, 5000)
      server.write('ready')
      await client.stdout.waitFor(/ready/, 5000)
      client.child.kill('SIGINT')
      expect(await closing).to.include({ code: 1011, initiator: 'remote' })
      server.resume()
      expect(await client.exit()).to.equal(130)
    })
  })
})
