/** connect(): open a WebSocket to a URL and resolve with a WsDuplex once it is open. */
import { WebSocket, type ClientOptions } from 'ws'
import { kHoldReading, WsDuplex } from './duplex.js'
import { abortedError, connectTimeoutError, type WsDuplexError } from './errors.js'
import {
  DEFAULTS,
  deflateOption,
  DUPLEX_OPTION_NAMES,
  integerOption,
  MAX_PAYLOAD,
  MAX_TIMER_MS,
  normalizeOptions,
  objectOption,
  protocolsOption,
  rejectMiscased,
  signalOption,
  splitDuplexOptions,
  timeoutOption,
  wsCloseTimeout,
  type WsDuplexOptions
} from './options.js'

export interface ConnectOptions extends ClientOptions, WsDuplexOptions {
  /** Subprotocols to offer (`Sec-WebSocket-Protocol`). */
  protocols?: string | string[]
  /** Aborts the attempt; `connect()` then rejects with `ERR_ABORTED`. */
  signal?: AbortSignal
  /**
   * Milliseconds for the whole attempt (TCP, TLS and the upgrade); then `ERR_CONNECT_TIMEOUT`.
   * @default 10000
   */
  timeout?: number
  /**
   * Largest incoming message in bytes; a larger one closes with 1009 (`ERR_PAYLOAD_TOO_LARGE`).
   * @default 1048576
   */
  maxPayload?: number
  /**
   * permessage-deflate; off unless asked for (compression costs CPU and memory per connection,
   * and compressed secrets can leak through length, see CRIME/BREACH).
   * @default false
   */
  perMessageDeflate?: ClientOptions['perMessageDeflate']
}

/** The options connect() reads itself; the rest go to ws (and from it to http). */
const OWN_OPTION_NAMES: readonly string[] = [
  ...DUPLEX_OPTION_NAMES,
  'protocols',
  'signal',
  'timeout',
  'maxPayload',
  'perMessageDeflate',
  'handshakeTimeout'
]

/**
 * Opens a WebSocket and resolves with a WsDuplex once the handshake completes. Refused, timed
 * out or aborted attempts reject with a WsDuplexError (`ERR_CONNECT_FAILED`,
 * `ERR_HANDSHAKE_REJECTED` with `status`, `ERR_CONNECT_TIMEOUT`, `ERR_ABORTED`) and leave no
 * socket behind.
 */
export async function connect(url: string | URL, options?: ConnectOptions): Promise<WsDuplex> {
  const given = objectOption('options', options)
  rejectMiscased(given, OWN_OPTION_NAMES, 'connect()')
  const { duplex: duplexOptions, rest } = splitDuplexOptions(given)
  const normalized = normalizeOptions(duplexOptions)
  const { signal, timeout, protocols, ...wsOptions } = rest as Omit<
    ConnectOptions,
    keyof WsDuplexOptions
  >
  signalOption(signal)
  const timeoutMs = timeoutOption('timeout', timeout, DEFAULTS.connectTimeout)
  protocolsOption(protocols)
  // ws reads a maxPayload of 0 (or undefined, NaN, -1) as no limit at all.
  const maxPayload = integerOption(
    'maxPayload',
    wsOptions.maxPayload,
    DEFAULTS.maxPayload,
    1,
    MAX_PAYLOAD
  )
  // ws's own: 0 means none (our `timeout` still bounds the attempt).
  integerOption('handshakeTimeout', wsOptions.handshakeTimeout, 0, 0, MAX_TIMER_MS)
  if (signal?.aborted) throw abortedError(signal)

  // `closeTimeout` is a ws 8.19+ option that @types/ws does not list yet.
  const clientOptions: ClientOptions & { closeTimeout: number } = {
    ...wsOptions,
    perMessageDeflate: deflateOption(wsOptions.perMessageDeflate),
    maxPayload,
    closeTimeout: wsCloseTimeout(normalized.closeTimeout)
  }
  let socket: WebSocket
  try {
    socket = new WebSocket(url, protocols, clientOptions)
  } catch (error) {
    // Our options are checked above; what ws still refuses is the URL (or an option of its own,
    // whose error names it).
    if (!/URL/.test((error as Error).message)) throw error
    throw new TypeError(`Expected \`url\` to be a WebSocket URL: ${(error as Error).message}`, {
      cause: error
    })
  }
  // Our 'open' listener goes on before the duplex's own. The duplex drops its listener when the
  // socket opens, and ws sizes the socket's listener dictionary by the most event names it ever
  // held at once: had ours still been there, every idle connection would pay for a larger one.
  // The promise settles after the 'open' event is over, when the duplex has seen it too.
  let opened = (): void => undefined
  const onOpen = (): void => opened()
  socket.on('open', onOpen)
  const duplex = new WsDuplex(socket, normalized)

  return new Promise<WsDuplex>((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      socket.off('open', onOpen)
      duplex.off('error', onError)
    }
    const giveUp = (error: WsDuplexError): void => {
      cleanup()
      duplex.destroy()
      reject(error)
    }
    opened = () => {
      cleanup()
      // Frames read with the handshake would fire their events before the caller's await
      // resumes and can listen.
      duplex[kHoldReading]()
      resolve(duplex)
    }
    const onError = (error: Error): void => {
      cleanup()
      reject(error)
    }
    const onAbort = (): void => giveUp(abortedError(signal as AbortSignal))
    const timer = setTimeout(() => giveUp(connectTimeoutError(timeoutMs)), timeoutMs)
    duplex.on('error', onError)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
