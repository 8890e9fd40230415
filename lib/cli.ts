/**
 * The `ws-duplex` command: a thin shell over connect(), createServer() and WsDuplex. `main()`
 * takes the arguments and the stdio streams and resolves with the exit status, so tests drive
 * it with PassThrough streams; bin.ts only hands it the process's own.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import {
  connect as tcpConnect,
  createServer as createTcpServer,
  type AddressInfo,
  type Server as TcpServer,
  type Socket
} from 'node:net'
import { performance } from 'node:perf_hooks'
import { Transform, type Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  USAGE,
  UsageError,
  parseCommandLine,
  type Command,
  type CommonOptions,
  type HostPort,
  type ListenAddress,
  type OnEof
} from './cli-args.js'
import { CloseCode } from './close-codes.js'
import { connect, type ConnectOptions } from './client.js'
import type { WsDuplex } from './duplex.js'
import { WsDuplexError } from './errors.js'
import { DEFAULTS, type WsDuplexOptions } from './options.js'
import {
  createServer,
  type ServerOptions,
  type VerifyClientInfo,
  type VerifyClientResult,
  type WsDuplexServer
} from './server.js'

export { USAGE } from './cli-args.js'

/** What `main()` reads, writes and listens to; bin.ts passes the process's own. */
export interface CliIo {
  stdin: Readable
  /** Ended after a clean close in stdio mode; destroyed with the error otherwise (as pipeline). */
  stdout: Writable
  stderr: Writable
  /** The environment of `--exec` commands. @default process.env */
  env?: NodeJS.ProcessEnv
  /** Turns `--progress` on by default and redraws it in place. @default false */
  stderrIsTTY?: boolean
  /**
   * Aborting it interrupts: connections close (1001 where everything was sent, else 1011) and
   * `main()` resolves with 130, or with
   * 143 / 129 when the abort reason is `'SIGTERM'` / `'SIGHUP'`.
   */
  signal?: AbortSignal
}

/** The documented exit statuses (see USAGE). */
export const ExitCode = {
  Ok: 0,
  Abnormal: 1,
  Usage: 2,
  CouldNotConnect: 3,
  HungUp: 129,
  Interrupted: 130,
  Terminated: 143
} as const

const CONNECT_FAILURES: ReadonlySet<string> = new Set([
  'ERR_CONNECT_FAILED',
  'ERR_HANDSHAKE_REJECTED',
  'ERR_CONNECT_TIMEOUT'
])

/** Runs one `ws-duplex` command line; never rejects. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  // Notices are best effort: a log reader that goes away (EPIPE) must not take a server down.
  io.stderr.on('error', ignore)
  try {
    return await runCommandLine(argv, io)
  } finally {
    io.stderr.off('error', ignore)
  }
}

function usageLine(error: UsageError): string {
  return `ws-duplex: ${oneLine(error.message)} (ERR_USAGE); see ws-duplex --help\n`
}

async function runCommandLine(argv: readonly string[], io: CliIo): Promise<number> {
  let command: Command
  try {
    command = parseCommandLine(argv)
  } catch (error) {
    if (!(error instanceof UsageError)) {
      io.stderr.write(`ws-duplex: ${describe(error)}\n`)
      return ExitCode.Abnormal
    }
    io.stderr.write(usageLine(error))
    return ExitCode.Usage
  }
  if (command.kind === 'help') return printOut(io, USAGE)
  if (command.kind === 'version') return printOut(io, `${version()}\n`)
  const report = new Reporter(io, command.options)
  try {
    switch (command.kind) {
      case 'connect':
        return await runConnect(command.url, command.onEof, command.options, io, report)
      case 'listen':
        return await runListen(command, io, report)
      case 'bridge-ws-tcp':
        return await runBridgeWsToTcp(command.listen, command.target, command.options, io, report)
      case 'bridge-tcp-ws':
        return await runBridgeTcpToWs(command.listen, command.target, command.options, io, report)
    }
  } catch (error) {
    // A value found wrong only now (an unreadable --ca file) reads like one found in parsing.
    if (error instanceof UsageError) {
      io.stderr.write(usageLine(error))
      return ExitCode.Usage
    }
    report.error(undefined, error)
    return ExitCode.Abnormal
  } finally {
    report.stopProgress()
  }
}

/** Writes `text` to stdout; a stdout that fails (a closed pipe, a full disk) is exit 1. */
function printOut(io: CliIo, text: string): Promise<number> {
  return new Promise((resolve) => {
    const onError = (error: Error): void => {
      io.stderr.write(`ws-duplex: stdout: ${describe(error)}\n`)
      resolve(ExitCode.Abnormal)
    }
    io.stdout.once('error', onError)
    io.stdout.write(text, (error) => {
      // A failed write is reported through 'error', which follows.
      if (error) return
      io.stdout.off('error', onError)
      resolve(ExitCode.Ok)
    })
  })
}

function version(): string {
  // lib/cli.ts and dist/cli.js both sit one level below package.json.
  const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8')
  return (JSON.parse(text) as { version: string }).version
}

// ------------------------------------------------------------------------------ connect

async function runConnect(
  url: URL,
  onEof: OnEof,
  options: CommonOptions,
  io: CliIo,
  report: Reporter
): Promise<number> {
  const clientOptions = await connectOptions(options)
  let ws: WsDuplex
  try {
    ws = await connect(url, { ...clientOptions, ...(io.signal && { signal: io.signal }) })
  } catch (error) {
    if (io.signal?.aborted === true) return interruptedStatus(io.signal)
    report.error(urlLabel(url), error)
    return connectFailureStatus(error)
  }
  report.startProgress(false)
  const error = await stdioSession(ws, io, onEof, report.progress)
  if (io.signal?.aborted === true) return interruptedStatus(io.signal)
  if (error === undefined) return ExitCode.Ok
  report.error(urlLabel(url), error)
  return ExitCode.Abnormal
}

/**
 * stdin to the WebSocket, the WebSocket to stdout. Resolves when the connection is over, with
 * its error (undefined after a clean close with every byte written to stdout).
 *
 * The end of stdin (`onEof`): WebSocket has no half-close, so "I have sent everything" can only
 * be said with the close frame, after which the peer can send nothing more. `close` says it at
 * once; `wait` never says it and reads until the peer closes; `echoed` says it once as many
 * bytes have arrived as were sent, which for an echo peer means everything has come back.
 */
async function stdioSession(
  ws: WsDuplex,
  io: CliIo,
  onEof: OnEof,
  progress: Progress
): Promise<Error | undefined> {
  const { stdin, stdout, signal } = io
  let sent = 0
  let received = 0
  /** Bytes read from stdin once the connection was closing: they could not be sent. */
  let dropped = 0
  let stdinEnded = false
  let stopped = false

  const endWebSocket = (): void => {
    if (canWrite(ws)) ws.end()
  }
  const checkEchoed = (): void => {
    if (onEof === 'echoed' && stdinEnded && received >= sent) endWebSocket()
  }
  const onData = (chunk: Buffer | string): void => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (!canWrite(ws)) {
      // The connection is closing: stdin's remaining bytes have nowhere to go.
      dropped += bytes.length
      stopStdin()
      return
    }
    sent += bytes.length
    progress.sent += bytes.length
    if (!ws.write(bytes)) stdin.pause()
  }
  const onDrain = (): void => {
    if (!stopped && !stdinEnded) stdin.resume()
  }
  const onEnd = (): void => {
    stdinEnded = true
    if (onEof === 'close') endWebSocket()
    else checkEchoed()
  }
  const onStdinError = (error: Error): void => {
    stopStdin()
    if (!ws.destroyed) ws.destroy(withContext('stdin', error))
  }
  const stopStdin = (): void => {
    if (stopped) return
    stopped = true
    stdin.off('data', onData)
    stdin.off('end', onEnd)
    stdin.pause()
  }
  const onAbort = (): void => {
    stopStdin()
    if (!ws.destroyed && ws.closeInfo === undefined)
      void ws.close(interruptCode(stdinEnded), 'interrupted')
  }
  let stdoutError: Error | undefined
  const onStdoutError = (error: Error): void => {
    // Once the WebSocket failed, pipeline() tears stdout down with that same error.
    if (!ws.destroyed) stdoutError ??= error
  }

  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length
      progress.received += chunk.length
      callback(null, chunk)
      checkEchoed()
    }
  })
  stdin.on('data', onData)
  stdin.on('end', onEnd)
  stdin.on('error', onStdinError)
  ws.on('drain', onDrain)
  stdout.on('error', onStdoutError)
  signal?.addEventListener('abort', onAbort, { once: true })
  if (signal?.aborted === true) onAbort()
  try {
    await pipeline(ws, meter, stdout)
    if (dropped === 0) return undefined
    // Exit 0 means every byte delivered: bytes taken from stdin and not sent are a failure.
    return new WsDuplexError(
      'ERR_STREAM_CLOSED',
      `${dropped} bytes read from stdin were not sent: the peer closed first`,
      closeCodeOf(ws)
    )
  } catch (error) {
    const failure = toError(error)
    return failure === stdoutError ? withContext('stdout', failure) : failure
  } finally {
    stopStdin()
    stdin.off('error', onStdinError)
    // Release stdin (a terminal or pipe would keep the process alive); errors no longer matter.
    stdin.on('error', ignore)
    if (!stdin.readableEnded) stdin.destroy()
    ws.off('drain', onDrain)
    stdout.off('error', onStdoutError)
    signal?.removeEventListener('abort', onAbort)
  }
}

// ------------------------------------------------------------------------------- listen

async function runListen(
  command: Extract<Command, { kind: 'listen' }>,
  io: CliIo,
  report: Reporter
): Promise<number> {
  const { address, mode, options } = command
  const stdio = mode.kind === 'stdio'
  const listener = await startWsServer(address, options, [], stdio ? 1 : undefined, report)
  if (listener === undefined) return ExitCode.CouldNotConnect
  const { server } = listener
  report.listening(`listening on ${wsAddress(server, address.path)}`, address.port === 0)

  if (mode.kind === 'stdio') {
    const accepted = await firstConnection(server, io.signal)
    if (accepted === undefined) {
      await listener.close()
      return interruptedStatus(io.signal)
    }
    const [ws, request] = accepted
    report.notice(`connection from ${remoteOf(request)}`)
    report.startProgress(false)
    const error = await stdioSession(ws, io, mode.onEof, report.progress)
    await listener.close()
    if (io.signal?.aborted === true) return interruptedStatus(io.signal)
    if (error === undefined) return ExitCode.Ok
    report.error(remoteOf(request), error)
    return ExitCode.Abnormal
  }

  const commands = new Commands()
  const sessions = new Sessions(report)
  report.startProgress(true)
  server.on('connection', (ws, request) => {
    const label = remoteOf(request)
    sessions.run(label, () =>
      mode.kind === 'echo'
        ? echoSession(ws, report.progress)
        : execSession(ws, request, mode.command, io, report.progress, commands)
    )
  })
  // A second signal exits at once (bin.ts): the commands must not outlive us then either.
  const killCommands = (): void => commands.signal('SIGKILL')
  process.on('exit', killCommands)
  try {
    await interrupted(io.signal)
    await listener.close()
    commands.signal('SIGTERM')
    // A session lasts until its command exits, which one ignoring SIGTERM does only at the
    // SIGKILL that ended() sends after the grace.
    await Promise.all([sessions.settled(), commands.ended(COMMAND_GRACE_MS)])
    return interruptedStatus(io.signal)
  } finally {
    process.off('exit', killCommands)
  }
}

/** How long `--exec` commands have after SIGTERM before SIGKILL, once we are interrupted. */
const COMMAND_GRACE_MS = 2000

/**
 * The `--exec` commands of a server. Each runs in its own process group (a new session, so
 * without a controlling terminal), and a signal goes to the whole group: what the shell started
 * too, even after the command itself has exited.
 */
class Commands {
  readonly #running = new Set<ChildProcess>()
  /** Groups whose command exited while something it started still runs. */
  readonly #lingering = new Set<number>()

  start(child: ChildProcess): void {
    this.#running.add(child)
  }

  exited(child: ChildProcess): void {
    this.#running.delete(child)
    for (const group of this.#lingering) if (!groupAlive(group)) this.#lingering.delete(group)
    if (child.pid !== undefined && groupAlive(child.pid)) this.#lingering.add(child.pid)
  }

  #lingeringAlive(): boolean {
    for (const group of this.#lingering) {
      if (groupAlive(group)) return true
      this.#lingering.delete(group)
    }
    return false
  }

  signal(signal: NodeJS.Signals): void {
    for (const child of this.#running) if (child.pid !== undefined) signalGroup(child.pid, signal)
    for (const group of this.#lingering) signalGroup(group, signal)
  }

  /**
   * Waits for the running commands to end, at most `ms`; then every group still there is
   * killed and its command let go, so that neither a command ignoring SIGTERM nor an orphan
   * holding its stderr keeps us running.
   */
  async ended(ms: number): Promise<void> {
    const deadline = performance.now() + ms
    let timer: NodeJS.Timeout | undefined
    const allClosed = Promise.all(
      [...this.#running].map((child) => new Promise((resolve) => child.once('close', resolve)))
    )
    await Promise.race([allClosed, new Promise((resolve) => (timer = setTimeout(resolve, ms)))])
    clearTimeout(timer)
    // What exited commands left running has no 'close' to wait for: it gets the same grace,
    // looked at every 50 ms.
    while (this.#lingeringAlive() && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    this.signal('SIGKILL')
    for (const child of this.#running) {
      child.stdin?.destroy()
      child.stdout?.destroy()
      child.stderr?.destroy()
      child.unref()
    }
  }
}

function signalGroup(group: number, signal: NodeJS.Signals | 0): void {
  try {
    process.kill(-group, signal)
  } catch {
    // The group is gone already.
  }
}

function groupAlive(group: number): boolean {
  try {
    process.kill(-group, 0)
    return true
  } catch {
    return false
  }
}

/** Sends back every byte, through the source/sink face (which ends with the stream). */
async function echoSession(ws: WsDuplex, progress: Progress): Promise<Error | undefined> {
  ws.on('error', ignore)
  async function* counted(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      progress.received += chunk.length
      yield chunk
      progress.sent += chunk.length
    }
  }
  try {
    await ws.sink(counted(ws.source))
    return undefined
  } catch (error) {
    return toError(error)
  }
}

/**
 * inetd: the command's stdin gets the connection's bytes and its stdout goes back. Its exit
 * ends the connection: status 0 closes with 1000 after its output, anything else with 1011. The
 * connection's end ends its stdin (a clean close) or sends it SIGTERM (an error); output it
 * writes after that cannot be delivered, so its stdout is closed (it gets EPIPE / SIGPIPE).
 * The session is over once both are: a command that fails after the connection closed (it
 * had output left, say) is reported as failed, not as a clean close.
 */
function execSession(
  ws: WsDuplex,
  request: IncomingMessage,
  command: string,
  io: CliIo,
  progress: Progress,
  commands: Commands
): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let failure: Error | undefined
    /** Its stdio closed too (all its output read): what it wrote has been forwarded. */
    let exited = false
    /** The process itself is gone (what it started may still hold its stdio). */
    let processExited = false
    let wsClosed = false
    let stdinOpen = true
    const settle = (): void => {
      if (processExited && wsClosed) resolve(failure)
    }
    const child = spawn(command, {
      shell: true,
      // Its own process group, so that a signal reaches what the shell started too.
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        ...(io.env ?? process.env),
        WS_DUPLEX_REMOTE_ADDRESS: request.socket.remoteAddress ?? '',
        WS_DUPLEX_REMOTE_PORT: String(request.socket.remotePort ?? ''),
        ...pathAndQuery(request.url),
        WS_DUPLEX_PROTOCOL: ws.socket.protocol
      }
    })
    commands.start(child)
    child.stderr.on('data', (chunk: Buffer) => io.stderr.write(chunk))

    // The connection to the command's stdin; a command that stops reading drops the rest.
    ws.on('data', (chunk: Buffer) => {
      progress.received += chunk.length
      if (stdinOpen && !child.stdin.write(chunk)) ws.pause()
    })
    child.stdin.on('drain', () => ws.resume())
    child.stdin.on('error', () => {
      stdinOpen = false
      ws.resume()
    })
    ws.on('end', () => {
      if (stdinOpen) child.stdin.end()
    })

    // The command's stdout to the connection.
    child.stdout.on('data', (chunk: Buffer) => {
      if (!canWrite(ws)) return
      progress.sent += chunk.length
      if (!ws.write(chunk)) child.stdout.pause()
    })
    ws.on('drain', () => child.stdout.resume())

    child.on('error', (error) => {
      failure ??= withContext('exec', error)
      // It could not be spawned: there is no process whose exit to wait for.
      processExited = true
      if (canWrite(ws)) void ws.close(CloseCode.InternalError, 'exec failed')
      settle()
    })
    child.on('exit', (code, signal) => {
      processExited = true
      if (code !== 0) failure ??= new Error(`the command exited with ${code ?? signal}`)
      settle()
    })
    child.on('close', (code, signal) => {
      exited = true
      commands.exited(child)
      if (!canWrite(ws)) return
      if (code === 0) ws.end()
      else void ws.close(CloseCode.InternalError, `exit ${code ?? signal}`)
    })
    ws.on('error', (error) => {
      failure ??= error
      if (!exited && child.pid !== undefined) signalGroup(child.pid, 'SIGTERM')
    })
    ws.on('close', () => {
      wsClosed = true
      if (!exited) {
        child.stdout.destroy()
        if (stdinOpen) child.stdin.end()
      }
      settle()
    })
  })
}

/** The request target, split: the query (without its '?') often carries a token. */
function pathAndQuery(target: string | undefined): {
  WS_DUPLEX_PATH: string
  WS_DUPLEX_QUERY: string
} {
  const url = target ?? '/'
  const mark = url.indexOf('?')
  return mark === -1
    ? { WS_DUPLEX_PATH: url, WS_DUPLEX_QUERY: '' }
    : { WS_DUPLEX_PATH: url.slice(0, mark), WS_DUPLEX_QUERY: url.slice(mark + 1) }
}

// ------------------------------------------------------------------------------ bridges

/**
 * websockify: WebSocket clients (offering `binary` or not) each to a new TCP connection, made
 * before the upgrade completes. Once the client is open it may send its bytes and close at
 * once; had the target then failed, they would be lost after a clean close. A target that
 * cannot be reached refuses the upgrade with 502 instead, and nothing was accepted.
 */
async function runBridgeWsToTcp(
  listen: ListenAddress,
  target: HostPort,
  options: CommonOptions,
  io: CliIo,
  report: Reporter
): Promise<number> {
  const targetText = `tcp://${hostText(target.host)}:${target.port}`
  const sockets = new Set<Socket>()
  /** Each admitted upgrade's open TCP connection, until its WebSocket is accepted. */
  const connected = new WeakMap<IncomingMessage, { tcp: Socket; onClientGone: () => void }>()
  const connectFirst = async ({ req }: VerifyClientInfo): Promise<VerifyClientResult> => {
    const tcp = connectTcp(target, options.connectTimeout ?? DEFAULTS.connectTimeout)
    tcp.setNoDelay(true)
    sockets.add(tcp)
    tcp.once('close', () => sockets.delete(tcp))
    try {
      await once(tcp, 'connect')
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error'
      report.notice(`${remoteOf(req)} refused: ${targetText}: ${describe(error)}`)
      return { status: 502, message: `tcp ${code}` }
    }
    // Until its WebSocket is accepted (spliceTcp then listens): a reset meanwhile must not
    // crash the bridge; spliceTcp finds the socket destroyed and closes with 1011.
    tcp.on('error', ignore)
    // The upgrade can still fail (the client left, a bad key): the TCP connection goes with it.
    const onClientGone = (): void => {
      tcp.destroy()
    }
    if (req.socket.destroyed) onClientGone()
    else req.socket.once('close', onClientGone)
    connected.set(req, { tcp, onClientGone })
    return true
  }
  const listener = await startWsServer(listen, options, ['binary'], undefined, report, connectFirst)
  if (listener === undefined) return ExitCode.CouldNotConnect
  const { server } = listener
  report.listening(
    `listening on ${wsAddress(server, listen.path)}, bridging to ${targetText}`,
    listen.port === 0
  )
  const sessions = new Sessions(report)
  report.startProgress(true)
  server.on('connection', (ws, request) => {
    sessions.run(remoteOf(request), () => {
      const pending = connected.get(request)
      if (pending === undefined) throw new Error('no TCP connection was made for this client')
      connected.delete(request)
      request.socket.off('close', pending.onClientGone)
      return spliceTcp(ws, pending.tcp, targetText, report.progress)
    })
  })
  await interrupted(io.signal)
  await listener.close()
  for (const socket of sockets) socket.destroy()
  await sessions.settled()
  return interruptedStatus(io.signal)
}

/** TCP clients, each to a new WebSocket connection to `target`. */
async function runBridgeTcpToWs(
  listen: HostPort,
  target: URL,
  options: CommonOptions,
  io: CliIo,
  report: Reporter
): Promise<number> {
  const clientOptions = await connectOptions(options)
  const server = createTcpServer({ allowHalfOpen: true, pauseOnConnect: true })
  try {
    await listenOn(server, listen)
  } catch (error) {
    report.error(`listen tcp://${hostText(listen.host)}:${listen.port}`, error)
    return ExitCode.CouldNotConnect
  }
  const address = server.address() as AddressInfo
  report.listening(
    `listening on tcp://${hostText(address.address)}:${address.port}, bridging to ${urlLabel(target)}`,
    listen.port === 0
  )
  const sessions = new Sessions(report)
  const live = new Set<WsDuplex>()
  const sockets = new Set<Socket>()
  const stopping = new AbortController()
  report.startProgress(true)
  server.on('connection', (tcp: Socket) => {
    tcp.setNoDelay(true)
    tcp.on('error', ignore)
    sockets.add(tcp)
    tcp.once('close', () => sockets.delete(tcp))
    sessions.run(`${hostText(tcp.remoteAddress ?? '?')}:${tcp.remotePort ?? '?'}`, async () => {
      let ws: WsDuplex
      try {
        ws = await connect(target, { ...clientOptions, signal: stopping.signal })
      } catch (error) {
        resetTcp(tcp)
        return withContext(urlLabel(target), toError(error))
      }
      live.add(ws)
      ws.once('close', () => live.delete(ws))
      if (stopping.signal.aborted) void ws.close(interruptCode(false), 'bridge closing')
      return spliceTcp(ws, tcp, undefined, report.progress)
    })
  })
  server.on('error', (error) => report.error('tcp server', error))
  await interrupted(io.signal)
  stopping.abort()
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  await Promise.all([...live].map((ws) => ws.close(interruptCode(false), 'bridge closing')))
  for (const socket of sockets) socket.destroy()
  await Promise.all([closed, sessions.settled()])
  return interruptedStatus(io.signal)
}

/**
 * Carries bytes between a WebSocket and a TCP connection, each way on its own. A TCP FIN ends
 * the WebSocket (close 1000 after the bytes before it); a clean close sends a FIN. A failed
 * WebSocket resets the TCP connection; a failed TCP connection closes the WebSocket with 1011.
 * Bytes that arrive on TCP once the WebSocket is closing cannot be delivered: TCP is reset, so
 * the sender learns. Resolves once both are closed, with the first error.
 */
function spliceTcp(
  ws: WsDuplex,
  tcp: Socket,
  tcpLabel: string | undefined,
  progress: Progress
): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let failure: Error | undefined
    let wsClosed = false
    let tcpClosed = false
    const settle = (): void => {
      if (wsClosed && tcpClosed) resolve(failure)
    }

    // WebSocket → TCP.
    ws.on('data', (chunk: Buffer) => {
      progress.received += chunk.length
      if (!tcp.destroyed && !tcp.write(chunk)) ws.pause()
    })
    tcp.on('drain', () => ws.resume())
    ws.on('end', () => {
      if (!tcp.destroyed) tcp.end()
    })
    ws.on('error', (error) => {
      failure ??= error
      resetTcp(tcp)
    })
    ws.on('close', () => {
      wsClosed = true
      // Keep reading TCP: its FIN finishes it, and any byte arriving now resets it.
      if (!tcp.destroyed) tcp.resume()
      settle()
    })

    // TCP → WebSocket.
    tcp.on('data', (chunk: Buffer) => {
      if (!canWrite(ws)) {
        resetTcp(tcp)
        return
      }
      progress.sent += chunk.length
      if (!ws.write(chunk)) tcp.pause()
    })
    ws.on('drain', () => tcp.resume())
    tcp.on('end', () => {
      if (canWrite(ws)) ws.end()
    })
    tcp.on('error', (error) => {
      const tcpError = tcpLabel === undefined ? error : withContext(tcpLabel, error)
      failure ??= tcpError
      if (canWrite(ws)) {
        const code = (error as NodeJS.ErrnoException).code ?? 'error'
        void ws.close(CloseCode.InternalError, `tcp ${code}`.slice(0, 123))
      }
    })
    tcp.on('close', () => {
      tcpClosed = true
      settle()
    })
    if (tcp.isPaused()) tcp.resume()
    if (tcp.destroyed) {
      tcpClosed = true
      if (canWrite(ws)) void ws.close(CloseCode.InternalError, 'tcp closed')
    }
  })
}

/**
 * A TCP connection to `target` that fails with ETIMEDOUT if it is not open within `ms`: the
 * OS's own limit (SYN retries, about two minutes on Linux) would leave a client hanging.
 */
function connectTcp(target: HostPort, ms: number): Socket {
  const tcp = tcpConnect({ host: target.host, port: target.port, allowHalfOpen: true })
  const timer = setTimeout(() => {
    const error: NodeJS.ErrnoException = new Error(`connect did not complete within ${ms} ms`)
    error.code = 'ETIMEDOUT'
    tcp.destroy(error)
  }, ms)
  timer.unref()
  const stop = (): void => clearTimeout(timer)
  tcp.once('connect', stop)
  tcp.once('close', stop)
  return tcp
}

function resetTcp(tcp: Socket): void {
  if (!tcp.destroyed) tcp.resetAndDestroy()
}

// ------------------------------------------------------------------------ shared helpers

/** Whether a byte written now could still be sent. */
function canWrite(ws: WsDuplex): boolean {
  return !ws.writableEnded && !ws.destroyed && ws.closeInfo === undefined
}

async function connectOptions(options: CommonOptions): Promise<ConnectOptions> {
  const result: ConnectOptions = { ...duplexOptions(options) }
  if (Object.keys(options.headers).length > 0) result.headers = options.headers
  if (options.protocols.length > 0) result.protocols = options.protocols
  const [origin] = options.origins
  if (origin !== undefined) result.origin = origin
  if (options.maxPayload !== undefined) result.maxPayload = options.maxPayload
  if (options.connectTimeout !== undefined) result.timeout = options.connectTimeout
  if (options.insecure) result.rejectUnauthorized = false
  if (options.ca !== undefined) result.ca = await readCa(options.ca)
  return result
}

async function readCa(file: string): Promise<Buffer> {
  let pem: Buffer
  try {
    pem = await readFile(file)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? toError(error).message
    throw new UsageError(`--ca: cannot read '${file}' (${code})`)
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new UsageError(`--ca: '${file}' holds no PEM certificate`)
  }
  return pem
}

function duplexOptions(options: CommonOptions): WsDuplexOptions {
  const result: WsDuplexOptions = {}
  if (options.closeTimeout !== undefined) result.closeTimeout = options.closeTimeout
  if (options.keepAlive !== undefined) {
    result.keepAlive = { interval: options.keepAlive, timeout: options.keepAlive }
  }
  return result
}

/** A WebSocket server and how to stop it. */
interface WsListener {
  server: WsDuplexServer
  /**
   * Stops listening, closing what is still open with 1011: each connection's output (an echo,
   * a command's, a bridge's) is cut mid-way, and its peer must not take the 1001 that
   * server.close() sends, a clean end, for a complete transfer.
   */
  close(): Promise<void>
}

/** Starts a WebSocket server; reports and resolves undefined when it cannot listen. */
async function startWsServer(
  address: ListenAddress,
  options: CommonOptions,
  alwaysAccepted: readonly string[],
  maxConnections: number | undefined,
  report: Reporter,
  verifyClient?: ServerOptions['verifyClient']
): Promise<WsListener | undefined> {
  const accepted = [...options.protocols, ...alwaysAccepted]
  const serverOptions: ServerOptions = {
    ...duplexOptions(options),
    port: address.port,
    host: address.host,
    // The first subprotocol we accept that the client offers; none is fine too.
    handleProtocols: (offered) => accepted.find((protocol) => offered.has(protocol)) ?? false
  }
  if (address.path !== undefined) serverOptions.path = address.path
  if (options.maxPayload !== undefined) serverOptions.maxPayload = options.maxPayload
  if (options.origins.length > 0) serverOptions.allowedOrigins = options.origins
  if (maxConnections !== undefined) serverOptions.maxConnections = maxConnections
  if (verifyClient !== undefined) serverOptions.verifyClient = verifyClient
  let server: WsDuplexServer
  try {
    server = await createServer(serverOptions)
  } catch (error) {
    report.error(`listen ${hostText(address.host)}:${address.port}`, error)
    return undefined
  }
  server.on('error', (error) => report.error('server', error))
  return {
    server,
    close: () => {
      // First: server.close() then waits for these endings rather than sending its 1001.
      for (const ws of server.connections) void ws.close(interruptCode(false), 'interrupted')
      return server.close()
    }
  }
}

function listenOn(server: TcpServer, address: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

function firstConnection(
  server: WsDuplexServer,
  signal: AbortSignal | undefined
): Promise<[WsDuplex, IncomingMessage] | undefined> {
  return new Promise((resolve) => {
    const onConnection = (ws: WsDuplex, request: IncomingMessage): void => {
      signal?.removeEventListener('abort', onAbort)
      resolve([ws, request])
    }
    const onAbort = (): void => {
      server.off('connection', onConnection)
      resolve(undefined)
    }
    if (signal?.aborted === true) {
      resolve(undefined)
      return
    }
    server.once('connection', onConnection)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * The close code for a connection we are interrupted in. 1001 (going away) ends the peer's
 * stream cleanly (RFC 6455 §7.4.1; ws-duplex and most readers take it for EOF), which is true
 * only if everything we had to send was sent; otherwise the transfer is cut, and the peer must
 * not exit 0 on a truncated file: 1011.
 */
function interruptCode(sentEverything: boolean): number {
  return sentEverything ? CloseCode.GoingAway : CloseCode.InternalError
}

/** Resolves when `signal` aborts; never without one (servers run until interrupted). */
function interrupted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal === undefined) return
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), { once: true })
  })
}

function interruptedStatus(signal: AbortSignal | undefined): number {
  if (signal?.reason === 'SIGTERM') return ExitCode.Terminated
  return signal?.reason === 'SIGHUP' ? ExitCode.HungUp : ExitCode.Interrupted
}

function connectFailureStatus(error: unknown): number {
  if (error instanceof WsDuplexError) {
    return CONNECT_FAILURES.has(error.code) ? ExitCode.CouldNotConnect : ExitCode.Abnormal
  }
  // connect() checks its arguments with TypeError / RangeError: a URL ws refuses, say.
  if (error instanceof TypeError || error instanceof RangeError) return ExitCode.Usage
  return ExitCode.CouldNotConnect
}

function wsAddress(server: WsDuplexServer, path: string | undefined): string {
  const address = server.address() as AddressInfo
  return `ws://${hostText(address.address)}:${address.port}${path ?? '/'}`
}

/** A URL for messages: without its query, which may hold a token. */
function urlLabel(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`
}

function closeCodeOf(ws: WsDuplex): { closeCode?: number } {
  const code = ws.closeInfo?.code
  return code === undefined ? {} : { closeCode: code }
}

function hostText(host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

function remoteOf(request: IncomingMessage): string {
  const { remoteAddress, remotePort } = request.socket
  return `${hostText(remoteAddress ?? '?')}:${remotePort ?? '?'}`
}

/** Connections of a server, numbered, each reported once it ends. */
class Sessions {
  readonly #report: Reporter
  readonly #live = new Set<Promise<void>>()
  #next = 1

  constructor(report: Reporter) {
    this.#report = report
  }

  run(label: string, session: () => Promise<Error | undefined>): void {
    const id = this.#next++
    const name = `#${id} ${label}`
    this.#report.notice(`${name} open`)
    this.#report.progress.open++
    let running: Promise<Error | undefined>
    try {
      running = session()
    } catch (error) {
      running = Promise.resolve(toError(error))
    }
    const done = running
      .catch(toError)
      .then((error) => {
        this.#report.progress.open--
        if (error === undefined) this.#report.notice(`${name} closed`)
        else this.#report.notice(`${name} failed: ${describe(error)}`)
      })
      .finally(() => this.#live.delete(done))
    this.#live.add(done)
  }

  async settled(): Promise<void> {
    while (this.#live.size > 0) await Promise.all([...this.#live])
  }
}

// --------------------------------------------------------------------- stderr reporting

class Reporter {
  readonly progress: Progress
  readonly #stderr: Writable
  readonly #quiet: boolean

  constructor(io: CliIo, options: CommonOptions) {
    this.#stderr = io.stderr
    this.#quiet = options.quiet
    const tty = io.stderrIsTTY === true
    const enabled = options.progress ?? tty
    this.progress = new Progress((text) => this.#stderr.write(text), enabled, tty)
  }

  notice(line: string): void {
    if (!this.#quiet) this.#line(line)
  }

  /** The listening address: shown even with --quiet for port 0, the only way to learn it. */
  listening(line: string, portWasPicked: boolean): void {
    if (!this.#quiet || portWasPicked) this.#line(line)
  }

  #line(line: string): void {
    this.progress.clearLine()
    this.#stderr.write(`ws-duplex: ${oneLine(line)}\n`)
  }

  /** Always shown, one line: `ws-duplex: <what>: <message> (<ERR_CODE>)`. */
  error(what: string | undefined, error: unknown): void {
    this.progress.clearLine()
    const prefix = what === undefined ? '' : `${oneLine(what)}: `
    this.#stderr.write(`ws-duplex: ${prefix}${describe(error)}\n`)
  }

  startProgress(showOpen: boolean): void {
    this.progress.start(showOpen)
  }

  stopProgress(): void {
    this.progress.stop()
  }
}

/** Bytes and rates on stderr, once a second and once at the end. */
class Progress {
  sent = 0
  received = 0
  open = 0
  readonly #write: (text: string) => void
  readonly #enabled: boolean
  readonly #tty: boolean
  #showOpen = false
  #timer: NodeJS.Timeout | undefined
  #startedAt = 0
  #last = { at: 0, sent: 0, received: 0 }
  #drawn = false

  constructor(write: (text: string) => void, enabled: boolean, tty: boolean) {
    this.#write = write
    this.#enabled = enabled
    this.#tty = tty
  }

  start(showOpen: boolean): void {
    if (!this.#enabled || this.#timer !== undefined) return
    this.#showOpen = showOpen
    this.#startedAt = performance.now()
    this.#last = { at: this.#startedAt, sent: 0, received: 0 }
    this.#timer = setInterval(() => this.#tick(), 1000)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer === undefined) return
    clearInterval(this.#timer)
    this.#timer = undefined
    const seconds = (performance.now() - this.#startedAt) / 1000
    const line =
      `ws-duplex: ${seconds.toFixed(2)} s, sent ${this.sent} bytes (${rate(this.sent, seconds)})` +
      `, received ${this.received} bytes (${rate(this.received, seconds)})`
    this.clearLine()
    this.#write(`${line}\n`)
  }

  /** Before a notice: a terminal's in-place line is wiped first. */
  clearLine(): void {
    if (!this.#drawn) return
    this.#drawn = false
    this.#write('\r\x1b[K')
  }

  #tick(): void {
    const now = performance.now()
    const seconds = (now - this.#last.at) / 1000
    const up = rate(this.sent - this.#last.sent, seconds)
    const down = rate(this.received - this.#last.received, seconds)
    this.#last = { at: now, sent: this.sent, received: this.received }
    const open = this.#showOpen ? `, ${this.open} open` : ''
    const line = `ws-duplex: sent ${size(this.sent)} (${up}), received ${size(this.received)} (${down})${open}`
    if (this.#tty) {
      this.#write(`\r${line}\x1b[K`)
      this.#drawn = true
    } else {
      this.#write(`${line}\n`)
    }
  }
}

function size(bytes: number): string {
  if (bytes < 1024) return `${Math.round(bytes)} B`
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`
}

function rate(bytes: number, seconds: number): string {
  return `${size(seconds > 0 ? bytes / seconds : 0)}/s`
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|HOSTNAME|ALTNAME/

/** One line: the message, the cause's message, then the codes in parentheses. */
function describe(error: unknown): string {
  if (error instanceof ContextError) return `${oneLine(error.what)}: ${describe(error.error)}`
  const failure = toError(error)
  let message = failure.message
  const cause = failure.cause
  let causeCode: string | undefined
  if (cause instanceof Error) {
    causeCode = codeOf(cause)
    if (causeCode !== undefined && message.endsWith(causeCode) && cause.message !== causeCode) {
      // "Could not open the WebSocket: ECONNREFUSED" → "...: connect ECONNREFUSED 127.0.0.1:9"
      const detail = cause.message.includes(causeCode)
        ? cause.message
        : `${cause.message} [${causeCode}]`
      message = message.slice(0, -causeCode.length) + detail
    } else if (cause.message !== '' && !message.includes(cause.message)) {
      message += `: ${cause.message}`
    }
  }
  const details: string[] = []
  const code = codeOf(failure)
  if (code !== undefined) details.push(code)
  if (failure instanceof WsDuplexError) {
    if (failure.status !== undefined) details.push(`HTTP ${failure.status}`)
    if (failure.closeCode !== undefined) details.push(`close code ${failure.closeCode}`)
  }
  let line = details.length > 0 ? `${message} (${details.join(', ')})` : message
  if (TLS_CODES.test(causeCode ?? code ?? '')) line += '; see --ca and --insecure'
  return oneLine(line)
}

function codeOf(error: Error): string | undefined {
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? code : undefined
}

/** An error and what it happened to (stdin, stdout, a TCP address...). */
class ContextError extends Error {
  readonly what: string
  readonly error: Error

  constructor(what: string, error: Error) {
    super(`${what}: ${error.message}`)
    this.what = what
    this.error = error
  }
}

function withContext(what: string, error: Error): Error {
  return new ContextError(what, error)
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim()
}

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

function ignore(): void {}
