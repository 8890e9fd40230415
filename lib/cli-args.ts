/**
 * The `ws-duplex` command line: its usage text and the parser that turns argv into a checked
 * command. Nothing here touches the network or the file system; every mistake is a UsageError
 * (exit status 2) whose message names the argument.
 */
import { parseArgs } from 'node:util'

export const USAGE = `Usage:
  ws-duplex connect <ws-url>
      stdin to the WebSocket, the WebSocket to stdout, byte for byte.
  ws-duplex listen [host:]port | ws://host:port[/path]
      Accept WebSocket connections (a port alone listens on 127.0.0.1; give 0.0.0.0:port
      or [::]:port for other hosts; port 0 picks a free one, printed on stderr). Per
      connection one of:
        --echo                 send every byte back (any number of connections)
    -e, --exec "<command>"     run <command> with sh -c, its stdin/stdout wired to the
                               connection, like inetd (any number of connections). Its
                               exit closes the connection: 1000 after its output for
                               status 0, else 1011; the connection's end ends its stdin.
                               It gets WS_DUPLEX_REMOTE_ADDRESS, WS_DUPLEX_REMOTE_PORT,
                               WS_DUPLEX_PATH, WS_DUPLEX_QUERY (after the '?', or empty)
                               and WS_DUPLEX_PROTOCOL in its environment.
                               It runs in a session of its own (no controlling
                               terminal). On an interrupt it and what it started (its
                               process group) get SIGTERM, and SIGKILL 2 s later.
        (neither)              stdin/stdout, for a single connection, then exit
  ws-duplex bridge ws://host:port[/path] tcp://host:port
      Listen for WebSocket clients and connect each to the TCP address (websockify-
      compatible: any path unless one is given, the "binary" subprotocol accepted),
      before accepting the client: a target that cannot be reached answers HTTP 502.
  ws-duplex bridge tcp://host:port ws[s]://host[:port]/path
      Listen on TCP and connect each client to the WebSocket URL.
  Bridges carry any number of connections, each on its own: a TCP FIN becomes a close
  with 1000, a clean close becomes a TCP FIN, an error becomes a TCP reset or a 1011.

Options:
  -H, --header "Name: value"   add a request header (repeatable; where ws-duplex connects)
      --protocol <name>        offer this subprotocol (repeatable); a listening side accepts
                               the first one the client also offers
  -o, --origin <origin>        connecting: send this Origin; listening: allow only these
                               origins, others get HTTP 403 (repeatable; a client that
                               sends no Origin, which only browsers must, is allowed)
      --ca <file>              trust the CA certificates in this PEM file (wss://)
  -k, --insecure               do not verify the server's TLS certificate (wss://)
      --keepalive <ms>         ping after <ms> without a frame; fail (exit 1) if nothing
                               arrives within <ms> of the ping (default: off)
      --close-timeout <ms>     how long to wait for the close handshake (default 5000)
      --connect-timeout <ms>   where ws-duplex connects: how long opening a connection
                               may take (TCP, TLS and upgrade; default 10000)
      --max-payload <bytes>    largest incoming message (default 1048576)
      --on-eof <mode>          connect, and listen with stdio: what the end of stdin does.
                               WebSocket has no half-close: once a side sends its close
                               frame the other side can send nothing more. Modes:
                                 close   flush, then close with 1000 at once; bytes the
                                         peer has not sent by then are lost (default, as
                                         websocat and wscat)
                                 wait    send nothing; keep reading until the peer closes
                                 echoed  keep reading until as many bytes have arrived as
                                         were sent, then close with 1000 (for echo peers
                                         such as listen --echo)
      --progress               bytes and rate on stderr (default: only when stderr is a
      --no-progress            terminal)
  -q, --quiet                  no notices on stderr (listening address, connections);
                               an address picked for port 0 is still printed
  -h, --help                   show this help and exit
  -V, --version                show the version and exit

Exit status:
  0    clean end: the close handshake completed with 1000, 1001 or 1005 and every
       byte was delivered (also --help, --version)
  1    the connection ended abnormally after it opened: reset or no close frame, a
       close code other than 1000/1001/1005, close or keepalive timeout, protocol error, a
       local read or write error, bytes read from stdin that the peer's close left unsent
  2    usage: unknown command or option, bad URL, address or value
  3    could not connect or listen: refused, unreachable, DNS, TLS failure, handshake
       rejected (HTTP status) or timed out, address in use
  130  interrupted by SIGINT (143: SIGTERM, 129: SIGHUP) after closing connections:
       with 1001 where everything we had to send was sent (connect after stdin's end),
       else with 1011, so that the peer never takes a cut transfer for a complete one;
       a second signal exits at once
  Servers (listen --echo, listen --exec, bridge) run until interrupted; a failing stderr
  (its reader gone) does not stop them. Errors are one line on stderr:
  "ws-duplex: <what>: <message> (<ERR_CODE>[, HTTP <status>][, close code <code>])";
  usage errors end with "(ERR_USAGE); see ws-duplex --help".
`

/** Thrown for every command line mistake; the CLI prints it and exits with 2. */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE'

  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export type OnEof = 'close' | 'wait' | 'echoed'

export interface HostPort {
  /** Without IPv6 brackets. */
  host: string
  port: number
}

export interface ListenAddress extends HostPort {
  /** Accept upgrades only on this path; undefined accepts every path. */
  path: string | undefined
}

/** Options shared by every command. */
export interface CommonOptions {
  headers: Record<string, string>
  protocols: string[]
  origins: string[]
  /** Path of a PEM file. */
  ca: string | undefined
  insecure: boolean
  keepAlive: number | undefined
  closeTimeout: number | undefined
  /** Where ws-duplex connects (a WebSocket or the bridge's TCP target); undefined: 10 s. */
  connectTimeout: number | undefined
  maxPayload: number | undefined
  /** undefined: on only when stderr is a terminal. */
  progress: boolean | undefined
  quiet: boolean
}

export type ListenMode =
  { kind: 'stdio'; onEof: OnEof } | { kind: 'echo' } | { kind: 'exec'; command: string }

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'connect'; url: URL; onEof: OnEof; options: CommonOptions }
  | { kind: 'listen'; address: ListenAddress; mode: ListenMode; options: CommonOptions }
  | { kind: 'bridge-ws-tcp'; listen: ListenAddress; target: HostPort; options: CommonOptions }
  | { kind: 'bridge-tcp-ws'; listen: HostPort; target: URL; options: CommonOptions }

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  header: { type: 'string', short: 'H', multiple: true },
  protocol: { type: 'string', multiple: true },
  origin: { type: 'string', short: 'o', multiple: true },
  ca: { type: 'string' },
  insecure: { type: 'boolean', short: 'k' },
  keepalive: { type: 'string' },
  'close-timeout': { type: 'string' },
  'connect-timeout': { type: 'string' },
  'max-payload': { type: 'string' },
  'on-eof': { type: 'string' },
  progress: { type: 'boolean' },
  'no-progress': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  echo: { type: 'boolean' },
  exec: { type: 'string', short: 'e' }
} as const

type OptionName = keyof typeof OPTIONS

/** Which options each command accepts, beyond --help, --version, --quiet and progress. */
const ALLOWED: Readonly<Record<Exclude<Command['kind'], 'help' | 'version'>, OptionName[]>> = {
  connect: [
    'header',
    'protocol',
    'origin',
    'ca',
    'insecure',
    'keepalive',
    'close-timeout',
    'connect-timeout',
    'max-payload',
    'on-eof'
  ],
  listen: [
    'protocol',
    'origin',
    'keepalive',
    'close-timeout',
    'max-payload',
    'on-eof',
    'echo',
    'exec'
  ],
  'bridge-ws-tcp': [
    'protocol',
    'origin',
    'keepalive',
    'close-timeout',
    'connect-timeout',
    'max-payload'
  ],
  'bridge-tcp-ws': [
    'header',
    'protocol',
    'origin',
    'ca',
    'insecure',
    'keepalive',
    'close-timeout',
    'connect-timeout',
    'max-payload'
  ]
}
const ALWAYS: readonly OptionName[] = ['help', 'version', 'quiet', 'progress', 'no-progress']

type Values = ReturnType<typeof parse>['values']

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: OPTIONS,
    allowPositionals: true,
    strict: true,
    tokens: true
  })
}

/** Parses and checks `argv` (without the node and script paths). Throws UsageError. */
export function parseCommandLine(argv: readonly string[]): Command {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse([...argv])
  } catch (error) {
    throw new UsageError(parseArgsMessage(error))
  }
  const { values, positionals, tokens } = parsed
  if (values.help === true) return { kind: 'help' }
  if (values.version === true) return { kind: 'version' }
  const [name, ...operands] = positionals
  if (name === undefined) throw new UsageError('expected a command: connect, listen or bridge')

  let command: Exclude<Command, { kind: 'help' | 'version' }>
  switch (name) {
    case 'connect': {
      const url = operand(operands, 1, 'connect <ws-url>')[0]
      command = {
        kind: 'connect',
        url: webSocketUrl(url, 'connect'),
        onEof: onEofOption(values['on-eof']),
        options: commonOptions(values, tokens)
      }
      break
    }
    case 'listen': {
      const address = operand(operands, 1, 'listen [host:]port')[0]
      command = {
        kind: 'listen',
        address: listenAddress(address),
        mode: listenMode(values),
        options: commonOptions(values, tokens)
      }
      break
    }
    case 'bridge': {
      const [from, to] = operand(operands, 2, 'bridge <from> <to>')
      command = bridgeCommand(from, to, commonOptions(values, tokens))
      break
    }
    default:
      throw new UsageError(`unknown command '${name}'; expected connect, listen or bridge`)
  }
  checkAllowed(command.kind, values)
  if (
    command.kind !== 'listen' &&
    command.kind !== 'bridge-ws-tcp' &&
    values.origin !== undefined
  ) {
    if (values.origin.length > 1) throw new UsageError('--origin can be given once when connecting')
  }
  return command
}

function parseArgsMessage(error: unknown): string {
  const code = (error as { code?: unknown }).code
  const message = error instanceof Error ? error.message : String(error)
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const match = /'([^']+)'/.exec(message)
    return `unknown option '${match?.[1] ?? message}'`
  }
  // Node's messages are long; the first sentence says it all ("Option '--x <value>' argument
  // missing", "Unexpected argument ..."), but for a value that looks like an option.
  const first = (message.split(/\.\s/)[0] ?? message).replace(/\.$/, '')
  const ambiguous = /^Option '(-[^']*)' argument is ambiguous/.exec(first)
  if (ambiguous !== null) {
    const long = /use '(--[a-z-]+)=/.exec(message)?.[1] ?? ambiguous[1] ?? ''
    return `${ambiguous[1] ?? ''} needs a value; give one that starts with '-' as ${long}=<value>`
  }
  return first
}

function operand(operands: string[], count: 1, usage: string): [string]
function operand(operands: string[], count: 2, usage: string): [string, string]
function operand(operands: string[], count: number, usage: string): string[] {
  if (operands.length !== count) {
    const got = operands.length === 0 ? 'none' : operands.map((o) => `'${o}'`).join(' ')
    throw new UsageError(`expected ${usage}, got ${got}`)
  }
  return operands
}

function checkAllowed(kind: keyof typeof ALLOWED, values: Values): void {
  const allowed = new Set<OptionName>([...ALWAYS, ...ALLOWED[kind]])
  const label = kind.startsWith('bridge') ? 'bridge' : kind
  const side =
    kind === 'bridge-ws-tcp'
      ? ' ws:// to tcp:// (ws-duplex listens for WebSocket clients)'
      : kind === 'bridge-tcp-ws'
        ? ' tcp:// to ws://'
        : ''
  for (const name of Object.keys(values) as OptionName[]) {
    if (values[name] !== undefined && !allowed.has(name)) {
      throw new UsageError(`--${name} cannot be used with ${label}${side}`)
    }
  }
}

function commonOptions(values: Values, tokens: ReturnType<typeof parse>['tokens']): CommonOptions {
  // --progress and --no-progress: the last one given wins.
  let progress: boolean | undefined
  for (const token of tokens) {
    if (token.kind !== 'option') continue
    if (token.name === 'progress') progress = true
    else if (token.name === 'no-progress') progress = false
  }
  return {
    headers: headerOptions(values.header ?? []),
    protocols: protocolOptions(values.protocol ?? []),
    origins: (values.origin ?? []).map(originOption),
    ca: values.ca === undefined ? undefined : nonEmpty('--ca', values.ca),
    insecure: values.insecure === true,
    keepAlive: integerOption('--keepalive', values.keepalive, 1, 2 ** 31 - 1),
    closeTimeout: integerOption('--close-timeout', values['close-timeout'], 1, 2 ** 31 - 1),
    connectTimeout: integerOption('--connect-timeout', values['connect-timeout'], 1, 2 ** 31 - 1),
    maxPayload: integerOption('--max-payload', values['max-payload'], 1, 2 ** 31 - 1),
    progress,
    quiet: values.quiet === true
  }
}

function nonEmpty(name: string, value: string): string {
  if (value === '') throw new UsageError(`${name} needs a value`)
  return value
}

function integerOption(
  name: string,
  value: string | undefined,
  min: number,
  max: number
): number | undefined {
  if (value === undefined) return undefined
  const number = /^\d+$/.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    throw new UsageError(`${name} expects an integer from ${min} to ${max}, got '${value}'`)
  }
  return number
}

function onEofOption(value: string | undefined): OnEof {
  if (value === undefined) return 'close'
  if (value === 'close' || value === 'wait' || value === 'echoed') return value
  throw new UsageError(`--on-eof expects close, wait or echoed, got '${value}'`)
}

/** RFC 7230 token characters, for header names and subprotocols (RFC 6455 §4.1). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

function headerOptions(given: string[]): Record<string, string> {
  const headers: Record<string, string> = {}
  const names = new Map<string, string>()
  for (const header of given) {
    const colon = header.indexOf(':')
    const name = colon === -1 ? '' : header.slice(0, colon).trim()
    const value = colon === -1 ? '' : header.slice(colon + 1).trim()
    if (!TOKEN.test(name)) {
      throw new UsageError(`--header expects "Name: value", got '${header}'`)
    }
    if (!FIELD_VALUE.test(value)) {
      throw new UsageError(
        `--header value has a character HTTP does not allow (a control, or past U+00FF): '${name}'`
      )
    }
    // Repeated names are joined, as HTTP allows for list-valued headers (RFC 9110 §5.3).
    const key = names.get(name.toLowerCase()) ?? name
    names.set(name.toLowerCase(), key)
    headers[key] = headers[key] === undefined ? value : `${headers[key]}, ${value}`
  }
  return headers
}

/** What Node lets through as a header value (RFC 9110 §5.5): tab, visible ASCII, obs-text. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

function protocolOptions(given: string[]): string[] {
  for (const [index, value] of given.entries()) {
    if (!TOKEN.test(value)) throw new UsageError(`--protocol expects a token, got '${value}'`)
    // RFC 6455 §4.1: the offered subprotocols are distinct; ws refuses a repeat.
    if (given.indexOf(value) !== index) {
      throw new UsageError(`--protocol '${value}' is given twice`)
    }
  }
  return given
}

/** An origin is ASCII (RFC 6454 §6.2: an international host goes in its punycode form). */
function originOption(value: string): string {
  if (!/^[\x21-\x7e]+$/.test(value)) {
    throw new UsageError(
      `--origin expects an ASCII origin such as https://app.example (punycode for an international name), got '${value}'`
    )
  }
  return value
}

function listenMode(values: Values): ListenMode {
  if (values.echo === true && values.exec !== undefined) {
    throw new UsageError('--echo and --exec cannot be used together')
  }
  if (values['on-eof'] !== undefined && (values.echo === true || values.exec !== undefined)) {
    throw new UsageError('--on-eof applies to listen with stdio only, not --echo or --exec')
  }
  if (values.echo === true) return { kind: 'echo' }
  if (values.exec !== undefined) return { kind: 'exec', command: nonEmpty('--exec', values.exec) }
  return { kind: 'stdio', onEof: onEofOption(values['on-eof']) }
}

function parseUrl(text: string, what: string): URL {
  try {
    return new URL(text)
  } catch {
    throw new UsageError(`${what}: '${text}' is not a URL`)
  }
}

function webSocketUrl(text: string, what: string): URL {
  const url = parseUrl(text, what)
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new UsageError(`${what}: expected a ws:// or wss:// URL, got '${text}'`)
  }
  if (url.hash !== '') throw new UsageError(`${what}: a WebSocket URL has no #fragment: '${text}'`)
  if (url.username !== '' || url.password !== '') {
    // ws would send them as Basic auth; say so rather than guess.
    throw new UsageError(`${what}: put credentials in --header "Authorization: ...", not the URL`)
  }
  return url
}

function portNumber(text: string, min: number, what: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN
  if (!(port >= min && port <= 65535)) {
    throw new UsageError(`${what}: expected a port from ${min} to 65535, got '${text}'`)
  }
  return port
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

/** `port`, `host:port`, `[v6]:port` or `ws://host:port/path`. */
export function listenAddress(text: string, what = 'listen'): ListenAddress {
  if (text.includes('://')) {
    const url = webSocketUrl(text, what)
    if (url.protocol === 'wss:') {
      throw new UsageError(`${what}: cannot listen with wss://; put a TLS terminator in front`)
    }
    if (url.search !== '') throw new UsageError(`${what}: no ?query in a listening URL: '${text}'`)
    return {
      host: unbracket(url.hostname),
      port: url.port === '' ? 80 : portNumber(url.port, 0, what),
      path: url.pathname === '/' ? undefined : url.pathname
    }
  }
  const match = /^(?:(\[[^\]]+\]|[^:[\]]+):)?([^:]+)$/.exec(text)
  if (match === null) {
    throw new UsageError(`${what}: expected [host:]port or ws://host:port/path, got '${text}'`)
  }
  return {
    host: match[1] === undefined ? '127.0.0.1' : unbracket(match[1]),
    port: portNumber(match[2] ?? '', 0, what),
    path: undefined
  }
}

function tcpAddress(text: string, min: number, what: string): HostPort {
  const url = parseUrl(text, what)
  if (url.protocol !== 'tcp:')
    throw new UsageError(`${what}: expected tcp://host:port, got '${text}'`)
  const extra =
    (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== ''
  if (url.hostname === '' || url.port === '' || extra || text.includes('@')) {
    throw new UsageError(`${what}: expected tcp://host:port, got '${text}'`)
  }
  return { host: unbracket(url.hostname), port: portNumber(url.port, min, what) }
}

function bridgeCommand(
  from: string,
  to: string,
  options: CommonOptions
): Extract<Command, { kind: 'bridge-ws-tcp' | 'bridge-tcp-ws' }> {
  const scheme = (text: string): string =>
    /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1]?.toLowerCase() ?? ''
  const [a, b] = [scheme(from), scheme(to)]
  if ((a === 'ws' || a === 'wss') && b === 'tcp') {
    return {
      kind: 'bridge-ws-tcp',
      listen: listenAddress(from, 'bridge <from>'),
      target: tcpAddress(to, 1, 'bridge <to>'),
      options
    }
  }
  if (a === 'tcp' && (b === 'ws' || b === 'wss')) {
    return {
      kind: 'bridge-tcp-ws',
      listen: tcpAddress(from, 0, 'bridge <from>'),
      target: webSocketUrl(to, 'bridge <to>'),
      options
    }
  }
  throw new UsageError(
    `bridge: expected ws://... tcp://... or tcp://... ws://..., got '${from}' '${to}'`
  )
}
