/**
 * connect() over a WHATWG WebSocket: the browser entry's client, and `ws-duplex/browser`'s
 * anywhere a global `WebSocket` exists (or one is passed in).
 */
import { WsDuplexError, abortedError, connectTimeoutError } from './errors.js'
import {
  DEFAULTS,
  DUPLEX_OPTION_NAMES,
  objectOption,
  protocolsOption,
  signalOption,
  timeoutOption
} from './options.js'
import { WsStream, kOpened, normalizeStreamOptions, type WsStreamOptions } from './stream.js'
import type { WhatwgWebSocket } from './whatwg-socket.js'

/** A WHATWG WebSocket class: the global one, or undici's in Node 20. */
export type WhatwgWebSocketClass = new (
  url: string,
  protocols?: string | string[]
) => WhatwgWebSocket

export interface WhatwgConnectOptions extends WsStreamOptions {
  /** Subprotocols to offer (`Sec-WebSocket-Protocol`). */
  protocols?: string | string[]
  /** Aborting rejects with `ERR_ABORTED` and closes the socket. */
  signal?: AbortSignal
  /**
   * Milliseconds for the opening handshake; then `ERR_CONNECT_TIMEOUT`.
   * @default 10000
   */
  timeout?: number
  /**
   * The WebSocket class to use.
   * @default globalThis.WebSocket
   */
  WebSocket?: WhatwgWebSocketClass
}

const OWN_OPTIONS: ReadonlySet<string> = new Set(['protocols', 'signal', 'timeout', 'WebSocket'])
const STREAM_OPTIONS: ReadonlySet<string> = new Set([...DUPLEX_OPTION_NAMES, 'maxPayload'])

/**
 * Opens a WebSocket to `url` (ws:, wss:, http: or https:) and resolves with its WsStream once
 * open. Refused, failed, timed out or aborted: rejects with a WsDuplexError and leaves no socket.
 * A browser reports no HTTP status for a refused upgrade, so that is `ERR_CONNECT_FAILED` too.
 */
export async function connect(
  url: string | URL,
  options: WhatwgConnectOptions = {}
): Promise<WsStream> {
  const target = checkUrl(url)
  const given = objectOption('options', options)
  const timeout = timeoutOption('timeout', given.timeout, DEFAULTS.connectTimeout)
  const signal = signalOption(given.signal)
  const protocols = protocolsOption(given.protocols)
  const WebSocketClass = checkWebSocketClass(given.WebSocket)
  const streamOptions: WsStreamOptions = {}
  for (const [name, value] of Object.entries(given)) {
    if (STREAM_OPTIONS.has(name)) Object.assign(streamOptions, { [name]: value })
    else if (!OWN_OPTIONS.has(name) && value !== undefined) throw unknownOption(name)
  }
  // Checked before the socket exists: a refused call must leave no connection open.
  normalizeStreamOptions(streamOptions)
  if (signal?.aborted) throw abortedError(signal)

  const socket =
    protocols === undefined ? new WebSocketClass(target) : new WebSocketClass(target, protocols)
  const stream = new WsStream(socket, streamOptions)
  let cutShort: WsDuplexError | undefined
  const giveUp = (error: WsDuplexError): void => {
    cutShort ??= error
    stream.destroy(error)
  }
  const timer = setTimeout(() => giveUp(connectTimeoutError(timeout)), timeout)
  const onAbort = (): void => giveUp(abortedError(signal))
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    await stream[kOpened]()
    return stream
  } catch (error) {
    throw cutShort ?? error
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', onAbort)
  }
}

function checkUrl(url: unknown): string {
  if (typeof url !== 'string' && !(url instanceof URL)) {
    throw new TypeError(`Expected \`url\` to be a string or URL, got ${typeof url}`)
  }
  let parsed: URL
  try {
    parsed = new URL(String(url))
  } catch {
    throw new TypeError(`Expected \`url\` to be a valid URL, got \`${String(url)}\``)
  }
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(parsed.protocol)) {
    throw new TypeError(`Expected \`url\` to be ws:, wss:, http: or https:, got ${parsed.protocol}`)
  }
  // RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
  if (parsed.hash !== '' || String(url).includes('#')) {
    throw new TypeError('Expected `url` to be a WebSocket URL: it contains a fragment identifier')
  }
  return parsed.href
}

/** A WHATWG WebSocket takes no other options: a typo (or a `ws` option) must not pass unseen. */
function unknownOption(name: string): TypeError {
  const why = WS_ONLY.has(name) ? ': a WHATWG WebSocket cannot send request headers' : ''
  return new TypeError(`Unknown option \`${name}\` for connect()${why}`)
}

const WS_ONLY: ReadonlySet<string> = new Set(['headers', 'origin'])

function checkWebSocketClass(given: unknown): WhatwgWebSocketClass {
  const found = given ?? (globalThis as { WebSocket?: unknown }).WebSocket
  if (typeof found !== 'function') {
    throw new WsDuplexError(
      'ERR_UNSUPPORTED',
      "No WebSocket class: pass `WebSocket` (undici's, say) where there is no global one"
    )
  }
  return found as WhatwgWebSocketClass
}
