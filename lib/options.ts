/**
 * The WsDuplex options: their types (the reference the README is built from), defaults, and the
 * one place where they are validated and normalised into a new object. The caller's object is
 * never written to or kept.
 */

/** What to do with a text frame; ws-duplex carries bytes, so text is a protocol error by default. */
export type TextPolicy = 'error' | 'ignore' | 'bytes'

export interface KeepAliveOptions {
  /**
   * Send a ping after this many milliseconds without any incoming frame.
   * @default 30000
   */
  interval?: number
  /**
   * Terminate with `ERR_KEEPALIVE_TIMEOUT` when no frame at all arrives this many milliseconds
   * after the ping.
   * @default 10000
   */
  timeout?: number
}

export interface WsDuplexOptions {
  /**
   * What a text frame does. `'error'`: a `'warning'` (`ERR_TEXT_FRAME`), a close with 1003, and
   * the stream ends with that error once the bytes received before it are read. `'ignore'`: a
   * `'warning'`, and the frame is dropped. `'bytes'`: its payload is delivered like a binary
   * frame's, without a warning.
   * @default 'error'
   */
  text?: TextPolicy
  /**
   * Largest outgoing frame payload in bytes. Queued small writes are coalesced up to this
   * size; a larger single write is split.
   * @default 65536
   */
  maxFrameSize?: number
  /**
   * Milliseconds to wait for the peer's close frame, counted from when ours is handed to the
   * socket (after every written byte). On expiry the socket is terminated and the stream
   * errors with `ERR_CLOSE_TIMEOUT`.
   * @default 5000
   */
  closeTimeout?: number
  /**
   * Ping when idle and give up on a silent peer. `true` uses the defaults; `false` disables.
   * @default false
   */
  keepAlive?: boolean | KeepAliveOptions
  /**
   * Bytes buffered for the reader before the socket is paused.
   * @default 65536
   */
  readableHighWaterMark?: number
  /**
   * Bytes buffered for writing before `write()` returns false; also bounds the bytes handed to
   * the socket and not yet flushed, so a writer held back by a slow peer keeps at most about
   * twice this per connection in memory. Room for four full frames lets the socket write several
   * in one system call while the kernel is busy (the bench measured 6-38 % less writer CPU per
   * MiB than with one frame's worth, 64 KiB).
   * @default 262144 (256 KiB)
   */
  writableHighWaterMark?: number
  /**
   * Over a WHATWG WebSocket, which cannot pause reading: the bytes received and not yet read
   * that the stream holds before it gives up with `ERR_READ_OVERFLOW` (close 1008, sent as
   * 4008). A `ws` socket is paused at `readableHighWaterMark` instead, except once our close
   * frame is out: it reads on, so the peer's answer can arrive, up to this many unread bytes.
   * @default 8388608 (8 MiB)
   */
  maxReadBuffer?: number
}

export interface NormalizedKeepAlive {
  readonly interval: number
  readonly timeout: number
}

export interface NormalizedOptions {
  readonly text: TextPolicy
  readonly maxFrameSize: number
  readonly closeTimeout: number
  readonly keepAlive: NormalizedKeepAlive | undefined
  readonly readableHighWaterMark: number
  readonly writableHighWaterMark: number
  readonly maxReadBuffer: number
}

export const DEFAULTS = {
  text: 'error',
  maxFrameSize: 64 * 1024,
  closeTimeout: 5000,
  keepAliveInterval: 30_000,
  keepAliveTimeout: 10_000,
  readableHighWaterMark: 64 * 1024,
  writableHighWaterMark: 256 * 1024,
  maxReadBuffer: 8 * 1024 * 1024,
  /** For connect() and createServer(): far below ws's 100 MiB, since a byte stream needs no big messages. */
  maxPayload: 1024 * 1024,
  connectTimeout: 10_000
} as const

/** Largest timer Node accepts without overflowing to 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** Largest `maxPayload`: ws keeps it as a 32-bit integer, and 2^31 wraps to "no limit". */
export const MAX_PAYLOAD = 2 ** 31 - 1

function describe(value: unknown): string {
  return `\`${typeof value === 'string' ? value : String(value)}\` (${typeof value})`
}

/** Throws `Expected \`name\` to be an integer from min to max, got \`v\` (type)`. */
export function integerOption(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number
): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`Expected \`${name}\` to be an integer, got ${describe(value)}`)
  }
  if (value < min || value > max) {
    throw new RangeError(`Expected \`${name}\` to be from ${min} to ${max}, got \`${value}\``)
  }
  return value
}

export function timeoutOption(name: string, value: unknown, fallback: number): number {
  return integerOption(name, value, fallback, 1, MAX_TIMER_MS)
}

/**
 * The `closeTimeout` to give ws, whose own close timer starts when ours does: a second later, so
 * ours fires first and reports the timeout, but never past what a Node timer holds (a longer
 * one fires after 1 ms and would cut every close handshake short).
 */
export function wsCloseTimeout(closeTimeout: number): number {
  return Math.min(closeTimeout + 1000, MAX_TIMER_MS)
}

export function oneOfOption<T extends string>(
  name: string,
  value: unknown,
  allowed: readonly T[],
  fallback: T
): T {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    const list = allowed.map((a) => `'${a}'`).join(', ')
    throw new TypeError(`Expected \`${name}\` to be one of ${list}, got ${describe(value)}`)
  }
  return value as T
}

export function booleanOption(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') {
    throw new TypeError(`Expected \`${name}\` to be a boolean, got ${describe(value)}`)
  }
  return value
}

export function objectOption(name: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`Expected \`${name}\` to be an object, got ${describe(value)}`)
  }
  return value as Record<string, unknown>
}

/**
 * connect() hands options it does not know to ws and http, which ignore names they do not know
 * either, so a miscased option of ours (`keepalive`) would be dropped without a word. Those
 * options are case-sensitive and none matches ours but for case, so such a name is a mistake.
 */
export function rejectMiscased(
  given: Record<string, unknown>,
  known: readonly string[],
  where: string
): void {
  for (const name of Object.keys(given)) {
    if (given[name] === undefined || known.includes(name)) continue
    const meant = known.find((option) => option.toLowerCase() === name.toLowerCase())
    if (meant !== undefined) {
      throw new TypeError(`Unknown option \`${name}\` for ${where}; did you mean \`${meant}\`?`)
    }
  }
}

export function stringOption(name: string, value: unknown): string | undefined {
  if (value !== undefined && typeof value !== 'string') {
    throw new TypeError(`Expected \`${name}\` to be a string, got ${describe(value)}`)
  }
  return value
}

export function functionOption<F extends (...args: never[]) => unknown>(
  name: string,
  value: F | undefined
): F | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new TypeError(`Expected \`${name}\` to be a function, got ${describe(value)}`)
  }
  return value
}

export function stringsOption(name: string, value: unknown): readonly string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new TypeError(`Expected \`${name}\` to be an array of strings, got ${describe(value)}`)
  }
  return value as readonly string[]
}

/** `perMessageDeflate`: false unless asked for; `true` or ws's options object turn it on. */
export function deflateOption<T extends object>(value: boolean | T | undefined): boolean | T {
  if (value === undefined) return false
  // ws reads any object, an array too, as its options: `[]` would turn compression on.
  if (
    typeof value !== 'boolean' &&
    (typeof value !== 'object' || value === null || Array.isArray(value))
  ) {
    throw new TypeError(
      `Expected \`perMessageDeflate\` to be a boolean or an options object, got ${describe(value)}`
    )
  }
  return value
}

/** RFC 6455 §4.1: each subprotocol is an RFC 7230 token, offered once. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

export function protocolsOption(value: unknown): string | string[] | undefined {
  if (value === undefined) return undefined
  const list: unknown[] = Array.isArray(value) ? value : [value]
  const valid = list.every((item) => typeof item === 'string' && TOKEN.test(item))
  if (!valid || new Set(list).size !== list.length) {
    throw new TypeError(
      'Expected `protocols` to be a subprotocol token or an array of distinct tokens'
    )
  }
  return value as string | string[]
}

export function signalOption(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined
  if (!(value instanceof AbortSignal)) {
    throw new TypeError(`Expected \`signal\` to be an AbortSignal, got ${describe(value)}`)
  }
  return value
}

const KEEP_ALIVE_KEYS: ReadonlySet<string> = new Set(['interval', 'timeout'])

/**
 * A misspelt option (`prot`, `intervall`) would otherwise be dropped without a word, its
 * default left in force. One given as undefined is no mistake.
 */
export function rejectUnknownOptions(
  given: Record<string, unknown>,
  known: ReadonlySet<string>,
  message: (name: string) => string
): void {
  for (const [name, value] of Object.entries(given)) {
    if (value !== undefined && !known.has(name)) throw new TypeError(message(name))
  }
}

function keepAliveOption(value: unknown): NormalizedKeepAlive | undefined {
  if (value === undefined || value === false) return undefined
  const given = value === true ? {} : objectOption('keepAlive', value)
  rejectUnknownOptions(
    given,
    KEEP_ALIVE_KEYS,
    (name) => `Unknown option \`keepAlive.${name}\`: expected interval or timeout`
  )
  return Object.freeze({
    interval: timeoutOption('keepAlive.interval', given.interval, DEFAULTS.keepAliveInterval),
    timeout: timeoutOption('keepAlive.timeout', given.timeout, DEFAULTS.keepAliveTimeout)
  })
}

/** The WsDuplex option names, so `connect()` and `createServer()` can split them from the rest. */
export const DUPLEX_OPTION_NAMES = [
  'text',
  'maxFrameSize',
  'closeTimeout',
  'keepAlive',
  'readableHighWaterMark',
  'writableHighWaterMark',
  'maxReadBuffer'
] as const satisfies readonly (keyof WsDuplexOptions)[]

/** Objects this module made: a server normalises once and hands the result to every connection. */
const normalized = new WeakSet<object>()

/** Every connection that takes the defaults shares this one (memory per connection counts). */
let defaultOptions: NormalizedOptions | undefined

/**
 * Validates the WsDuplex options and returns a frozen object with every default filled: a new
 * one, the same object when it came from here already, or a shared one when nothing is set.
 */
export function normalizeOptions(options: unknown): NormalizedOptions {
  if (typeof options === 'object' && options !== null && normalized.has(options)) {
    return options as NormalizedOptions
  }
  const given = objectOption('options', options)
  if (DUPLEX_OPTION_NAMES.every((name) => given[name] === undefined)) {
    return (defaultOptions ??= buildOptions({}))
  }
  return buildOptions(given)
}

function buildOptions(given: Record<string, unknown>): NormalizedOptions {
  const result: NormalizedOptions = Object.freeze({
    text: oneOfOption<TextPolicy>('text', given.text, ['error', 'ignore', 'bytes'], DEFAULTS.text),
    maxFrameSize: integerOption(
      'maxFrameSize',
      given.maxFrameSize,
      DEFAULTS.maxFrameSize,
      1,
      2 ** 30
    ),
    closeTimeout: timeoutOption('closeTimeout', given.closeTimeout, DEFAULTS.closeTimeout),
    keepAlive: keepAliveOption(given.keepAlive),
    readableHighWaterMark: integerOption(
      'readableHighWaterMark',
      given.readableHighWaterMark,
      DEFAULTS.readableHighWaterMark,
      1,
      2 ** 30
    ),
    writableHighWaterMark: integerOption(
      'writableHighWaterMark',
      given.writableHighWaterMark,
      DEFAULTS.writableHighWaterMark,
      1,
      2 ** 30
    ),
    maxReadBuffer: integerOption(
      'maxReadBuffer',
      given.maxReadBuffer,
      DEFAULTS.maxReadBuffer,
      1,
      2 ** 31
    )
  })
  normalized.add(result)
  return result
}

/** Splits an options object into the WsDuplex options and everything else (a new object each). */
export function splitDuplexOptions<T extends object>(
  options: T
): { duplex: WsDuplexOptions; rest: Omit<T, keyof WsDuplexOptions> } {
  const duplexNames: ReadonlySet<string> = new Set(DUPLEX_OPTION_NAMES)
  const duplex: Record<string, unknown> = {}
  const rest: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(options)) {
    if (duplexNames.has(name)) duplex[name] = value
    else rest[name] = value
  }
  return { duplex: duplex as WsDuplexOptions, rest: rest as Omit<T, keyof WsDuplexOptions> }
}
