/**
 * createServer(): accept WebSocket upgrades and hand each connection over as a WsDuplex. The
 * upgrade is checked here (path, origin, connection limit, verifyClient) before ws completes it,
 * so a refused client gets a real HTTP status.
 */
import { EventEmitter } from 'node:events'
import {
  createServer as createHttpServer,
  STATUS_CODES,
  type IncomingMessage,
  type Server,
  type ServerResponse
} from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { Server as NetServer, type AddressInfo } from 'node:net'
import type { Duplex as NodeDuplex } from 'node:stream'
import { WebSocketServer, type ServerOptions as WsServerOptions, type WebSocket } from 'ws'
import { CloseCode } from './close-codes.js'
import { kHoldReading, kOnConnectionClosed, WsDuplex } from './duplex.js'
import {
  booleanOption,
  DEFAULTS,
  deflateOption,
  functionOption,
  integerOption,
  MAX_PAYLOAD,
  normalizeOptions,
  objectOption,
  rejectUnknownOptions,
  type NormalizedOptions,
  splitDuplexOptions,
  stringOption,
  stringsOption,
  timeoutOption,
  wsCloseTimeout,
  type WsDuplexOptions
} from './options.js'

export interface VerifyClientInfo {
  req: IncomingMessage
  /** The `Origin` header, if the client sent one (browsers always do). */
  origin: string | undefined
  /** Whether the connection is TLS. */
  secure: boolean
}

/** `true` accepts; `false` refuses with 401; an object refuses with its own status. */
export type VerifyClientResult = boolean | { status: number; message?: string }

export interface ServerOptions extends WsDuplexOptions {
  /**
   * Port to listen on (0 picks a free one). Ignored when `server` is given.
   * @default 0
   */
  port?: number
  /**
   * Address to listen on. Ignored when `server` is given.
   * @default all interfaces, as Node's `listen()`
   */
  host?: string
  /**
   * Accept upgrades only on this path (query string ignored); others get 404.
   * @default every path
   */
  path?: string
  /** Attach to an existing http or https server instead of creating one. */
  server?: Server | HttpsServer
  /**
   * Largest incoming message in bytes; a larger one closes with 1009.
   * @default 1048576
   */
  maxPayload?: number
  /** Decide per request; may be async. Runs after the origin and connection checks. */
  verifyClient?: (info: VerifyClientInfo) => VerifyClientResult | Promise<VerifyClientResult>
  /**
   * Exact `Origin` values allowed (e.g. `https://app.example`); any other origin gets 403.
   * Requests without an Origin header (non-browser clients) are allowed.
   * @default every origin
   */
  allowedOrigins?: readonly string[]
  /**
   * Live connections allowed at once; beyond it, upgrades get 503.
   * @default Infinity
   */
  maxConnections?: number
  /**
   * Milliseconds a client has to send its complete upgrade request (only when ws-duplex
   * creates the HTTP server).
   * @default 10000
   */
  handshakeTimeout?: number
  /**
   * permessage-deflate; off unless asked for.
   * @default false
   */
  perMessageDeflate?: WsServerOptions['perMessageDeflate']
  /** Picks the subprotocol, as ws's `handleProtocols`. */
  handleProtocols?: WsServerOptions['handleProtocols']
  /**
   * ws's option: may several incoming messages be handed on in one tick (true), or must each
   * wait a `setImmediate` (false)? Large frames (what a ws-duplex peer sends) read faster with
   * true; many small frames from a peer that does not coalesce read faster with false.
   * `bench/sync-events.ts` measures both.
   * @default true
   */
  allowSynchronousEvents?: boolean
}

export interface WsDuplexServerEvents {
  /** A client connected. */
  connection: [duplex: WsDuplex, request: IncomingMessage]
  /** The HTTP server ws-duplex created failed (an attached server's errors stay on it). */
  error: [error: Error]
  /** The server stopped and every connection ended. */
  close: []
}

interface NormalizedServerOptions {
  readonly path: string | undefined
  readonly allowedOrigins: ReadonlySet<string> | undefined
  readonly maxConnections: number
  readonly verifyClient: ServerOptions['verifyClient']
  readonly duplexOptions: NormalizedOptions
}

/** A WebSocket server whose connections are WsDuplex streams. Also an async iterable of them. */
export class WsDuplexServer extends EventEmitter<WsDuplexServerEvents> {
  readonly #http: Server | HttpsServer
  readonly #ownsHttp: boolean
  readonly #wss: WebSocketServer
  readonly #options: NormalizedServerOptions
  readonly #connections = new Set<WsDuplex>()
  /** Hands each connection to one `for await` loop, however many there are. */
  readonly #iteration = new ConnectionQueue()
  /** Sockets whose upgrade is being checked (verifyClient may take a while). */
  readonly #upgrading = new Set<NodeDuplex>()
  #closing: Promise<void> | undefined

  /** @internal use createServer() */
  constructor(
    http: Server | HttpsServer,
    ownsHttp: boolean,
    wss: WebSocketServer,
    options: NormalizedServerOptions
  ) {
    super()
    this.#http = http
    this.#ownsHttp = ownsHttp
    this.#wss = wss
    this.#options = options
    http.on('upgrade', this.#onUpgrade)
    if (!ownsHttp) attachedServers(http).add(this)
    // An attached server's errors are its owner's to handle, on the server they listen to.
    if (ownsHttp) http.on('error', this.#onHttpError)
  }

  address(): AddressInfo | string | null {
    return this.#http.address()
  }

  /** The connections that are open now. */
  get connections(): ReadonlySet<WsDuplex> {
    return this.#connections
  }

  /**
   * Stops accepting, closes every live connection with 1001 (going away) and resolves once they
   * have all ended (each bounded by its `closeTimeout`). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown(): Promise<void> {
    this.#http.off('upgrade', this.#onUpgrade)
    attached.get(this.#http)?.delete(this)
    const stopped = this.#ownsHttp ? closeHttpServer(this.#http) : Promise.resolve()
    // A verifyClient that never settles must not hold the close: these get their 503 now.
    for (const socket of this.#upgrading) refuseUpgrade(socket, 503)
    await Promise.all(
      [...this.#connections].map((duplex) =>
        duplex.destroyed && duplex.closeInfo === undefined
          ? new Promise<void>((resolve) => duplex.events.once('close', () => resolve()))
          : duplex.close(CloseCode.GoingAway, 'server closing').then(() => undefined)
      )
    )
    this.#iteration.end()
    await stopped
    this.#http.off('error', this.#onHttpError)
    this.#wss.close()
    this.emit('close')
  }

  /**
   * Yields each connection once: several loops share them out (a pool of workers), and a
   * connection accepted while no loop waits is held for the next one, unless no loop is active
   * and 'connection' listeners take it. Ends once the server has closed.
   */
  [Symbol.asyncIterator](): AsyncIterator<WsDuplex> {
    return this.#iteration.iterator()
  }

  readonly #forget = (duplex: WsDuplex): void => {
    this.#connections.delete(duplex)
    this.#iteration.drop(duplex)
  }

  readonly #onHttpError = (error: Error): void => {
    this.emit('error', error)
  }

  /**
   * Whether an upgrade request is for this server: a WebSocket handshake (another protocol's
   * upgrade, h2c say, is not, and must not reach verifyClient, which may be a costly lookup)
   * on its `path` (any path without one).
   */
  #serves(request: IncomingMessage): boolean {
    const path = this.#options.path
    return isWebSocketUpgrade(request) && (path === undefined || pathOf(request.url) === path)
  }

  /**
   * An attached server shares its http server's upgrades with the other 'upgrade' listeners:
   * a request for another path or protocol is theirs (another ws-duplex server's, or the application's
   * own ws `noServer` handler's), and the socket must be left alone: an HTTP answer written on
   * a socket someone else upgraded would corrupt its first WebSocket frame. Only when ws-duplex
   * servers are the only listeners and none serves the request does one of them answer it (404,
   * or 400 for an upgrade that is not a WebSocket handshake).
   */
  #answersUnserved(request: IncomingMessage): boolean {
    if (this.#ownsHttp) return true
    const servers = attached.get(this.#http)
    if (servers === undefined || this.#http.listenerCount('upgrade') > servers.size) return false
    for (const server of servers) if (server.#serves(request)) return false
    return servers.values().next().value === this
  }

  readonly #onUpgrade = (request: IncomingMessage, socket: NodeDuplex, head: Buffer): void => {
    if (!this.#serves(request)) {
      if (!this.#answersUnserved(request)) return
      socket.on('error', ignoreSocketError)
      refuseUpgrade(socket, isWebSocketUpgrade(request) ? 404 : 400)
      return
    }
    socket.on('error', ignoreSocketError)
    // A verifyClient or handleProtocols that throws (or rejects) is the server's fault: 500.
    this.#admit(request, socket, head).catch((error: unknown) => {
      refuseUpgrade(
        socket,
        500,
        error instanceof VerifyClientError ? 'verifyClient failed' : undefined
      )
    })
  }

  async #admit(request: IncomingMessage, socket: NodeDuplex, head: Buffer): Promise<void> {
    const options = this.#options
    const origin = request.headers.origin
    if (
      origin !== undefined &&
      options.allowedOrigins !== undefined &&
      !options.allowedOrigins.has(origin)
    ) {
      refuseUpgrade(socket, 403)
      return
    }
    if (
      this.#closing !== undefined ||
      this.#connections.size + this.#upgrading.size >= options.maxConnections
    ) {
      refuseUpgrade(socket, 503)
      return
    }
    this.#upgrading.add(socket)
    try {
      if (options.verifyClient !== undefined) {
        const secure = 'encrypted' in socket && socket.encrypted === true
        const verdict = await Promise.resolve()
          .then(() => options.verifyClient?.({ req: request, origin, secure }))
          .catch((error: unknown) => {
            throw new VerifyClientError(error)
          })
        const refusal = refusalOf(verdict)
        if (refusal !== undefined) {
          refuseUpgrade(socket, refusal.status, refusal.message)
          return
        }
      }
      if (this.#closing !== undefined) {
        refuseUpgrade(socket, 503)
        return
      }
      // The client left while verifyClient ran: ws would destroy the socket without calling
      // back, and its 'close' has already passed, so the wait below would never end.
      if (socket.destroyed || !socket.readable || !socket.writable) {
        socket.destroy()
        return
      }
      await new Promise<void>((resolve) => {
        // ws destroys a socket it cannot upgrade (bad key, version...) without calling back.
        const onClose = (): void => resolve()
        socket.once('close', onClose)
        this.#wss.handleUpgrade(request, socket, head, (ws) => {
          // Drop the listener: it would keep this request alive for the whole connection.
          socket.off('close', onClose)
          // Upgraded: a close() from a 'connection' listener must not answer it with a 503.
          this.#upgrading.delete(socket)
          this.#accept(ws, request, socket)
          resolve()
        })
      })
    } finally {
      this.#upgrading.delete(socket)
    }
  }

  #accept(ws: WebSocket, request: IncomingMessage, socket: NodeDuplex): void {
    // ws watches the socket's errors from here on.
    socket.off('error', ignoreSocketError)
    const duplex = new WsDuplex(ws, this.#options.duplexOptions)
    this.#connections.add(duplex)
    // One callback per server, not a listener and closure per connection.
    duplex[kOnConnectionClosed] = this.#forget
    // Held for a loop unless 'connection' listeners alone take connections (nothing would ever
    // collect them).
    if (this.#iteration.iterators > 0 || this.listenerCount('connection') === 0) {
      this.#iteration.push(duplex)
    }
    try {
      this.emit('connection', duplex, request)
    } catch (error) {
      // A listener's bug, not a failed upgrade: nothing may be written as HTTP on a socket that
      // now speaks WebSocket. It surfaces as any throwing listener's would, uncaught.
      process.nextTick(rethrow, error)
    }
  }
}

/** The ws-duplex servers attached to each http server, in the order they were attached. */
const attached = new WeakMap<Server | HttpsServer, Set<WsDuplexServer>>()

function attachedServers(http: Server | HttpsServer): Set<WsDuplexServer> {
  let servers = attached.get(http)
  if (servers === undefined) attached.set(http, (servers = new Set()))
  return servers
}

/** Every createServer() option but the WsDuplex ones (which splitDuplexOptions takes first). */
const SERVER_OPTION_NAMES: ReadonlySet<string> = new Set([
  'port',
  'host',
  'path',
  'server',
  'maxPayload',
  'verifyClient',
  'allowedOrigins',
  'maxConnections',
  'handshakeTimeout',
  'perMessageDeflate',
  'handleProtocols',
  'allowSynchronousEvents'
] satisfies (keyof Omit<ServerOptions, keyof WsDuplexOptions>)[])

/**
 * Starts a WebSocket server and resolves once it listens (at once when attached to `server`).
 * `onConnection` is added as a 'connection' listener.
 */
export async function createServer(
  options?: ServerOptions,
  onConnection?: (duplex: WsDuplex, request: IncomingMessage) => void
): Promise<WsDuplexServer> {
  const { duplex: duplexOptions, rest } = splitDuplexOptions(objectOption('options', options))
  const normalizedDuplex = normalizeOptions(duplexOptions)
  const given = rest as Omit<ServerOptions, keyof WsDuplexOptions>
  rejectUnknownOptions(
    given,
    SERVER_OPTION_NAMES,
    (name) => `Unknown option \`${name}\` for createServer()`
  )
  if (onConnection !== undefined && typeof onConnection !== 'function') {
    throw new TypeError('Expected `onConnection` to be a function')
  }
  // Requests are matched on their path alone (the query is ignored), so a `?` could never match.
  if (
    given.path !== undefined &&
    (typeof given.path !== 'string' || !given.path.startsWith('/') || /[?#]/.test(given.path))
  ) {
    throw new TypeError(
      `Expected \`path\` to be a string starting with / and without ? or #, got \`${String(given.path)}\``
    )
  }
  const verifyClient = functionOption('verifyClient', given.verifyClient)
  const allowedOrigins = stringsOption('allowedOrigins', given.allowedOrigins)
  const handleProtocols = functionOption('handleProtocols', given.handleProtocols)
  // A host that is not a string would reach listen() as its backlog: every interface.
  const host = stringOption('host', given.host)
  if (given.server !== undefined && !isHttpServer(given.server)) {
    throw new TypeError(
      `Expected \`server\` to be an http or https Server, got ${typeof given.server}`
    )
  }
  const port = integerOption('port', given.port, 0, 0, 65535)
  const maxPayload = integerOption(
    'maxPayload',
    given.maxPayload,
    DEFAULTS.maxPayload,
    1,
    MAX_PAYLOAD
  )
  const handshakeTimeout = timeoutOption(
    'handshakeTimeout',
    given.handshakeTimeout,
    DEFAULTS.connectTimeout
  )
  const maxConnections =
    given.maxConnections === undefined || given.maxConnections === Infinity
      ? Infinity
      : integerOption('maxConnections', given.maxConnections, 0, 1, 2 ** 31)
  const allowSynchronousEvents = booleanOption(
    'allowSynchronousEvents',
    given.allowSynchronousEvents,
    true
  )

  const wssOptions: WsServerOptions & { closeTimeout: number } = {
    noServer: true,
    clientTracking: false,
    maxPayload,
    perMessageDeflate: deflateOption(given.perMessageDeflate),
    allowSynchronousEvents,
    closeTimeout: wsCloseTimeout(normalizedDuplex.closeTimeout)
  }
  if (handleProtocols !== undefined) wssOptions.handleProtocols = handleProtocols
  const wss = new WebSocketServer(wssOptions)

  const ownsHttp = given.server === undefined
  const http =
    given.server ??
    createHttpServer({
      headersTimeout: handshakeTimeout,
      requestTimeout: handshakeTimeout,
      // Node checks the two timeouts above only this often (30 s by default).
      connectionsCheckingInterval: Math.min(handshakeTimeout, 1000)
    })
  if (ownsHttp) http.on('request', answerUpgradeRequired)

  // Listen first: a listen error (EADDRINUSE) must only reject here, not also surface as an
  // 'error' on a server object the caller never received.
  if (ownsHttp) await listen(http, port, host)
  const server = new WsDuplexServer(http, ownsHttp, wss, {
    path: given.path,
    allowedOrigins: allowedOrigins === undefined ? undefined : new Set(allowedOrigins),
    maxConnections,
    verifyClient,
    duplexOptions: normalizedDuplex
  })
  if (onConnection !== undefined) server.on('connection', onConnection)
  return server
}

function listen(http: Server, port: number, host: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error)
    http.once('error', onError)
    http.listen(port, host, () => {
      http.off('error', onError)
      resolve()
    })
  })
}

function closeHttpServer(http: Server | HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    http.close(() => resolve())
    // Sockets that have not finished a request, or sent none (a port scan, a preconnect): close()
    // stops the timer that enforces handshakeTimeout, so nothing else would end them. Upgraded
    // sockets are no longer the HTTP server's and are closed with 1001 instead.
    http.closeAllConnections()
  })
}

/** A plain HTTP request to a WebSocket-only server: RFC 6455 §4.2.2 suggests 426. */
function answerUpgradeRequired(_request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(426, { Connection: 'close', Upgrade: 'websocket', 'Content-Length': 0 })
  response.end()
}

function refuseUpgrade(socket: NodeDuplex, status: number, message?: string): void {
  // Refused already (at close(), while verifyClient ran): that answer is on its way.
  if (socket.writableEnded) return
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = message ?? STATUS_CODES[status] ?? 'Refused'
  // HTTP sockets allow half-open: a client that never closes its side would otherwise hold
  // this one (and server.close()) forever once our answer is out.
  socket.once('finish', destroyAfterAnswer)
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Refused'}\r\n` +
      'Connection: close\r\nContent-Type: text/plain\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  )
}

/**
 * What a `verifyClient` verdict refuses with (undefined accepts). Any other verdict is a bug in
 * the verifier, answered with 500 as a verifier that throws: it must not reach the status line.
 */
function refusalOf(verdict: unknown): { status: number; message?: string } | undefined {
  if (verdict === true) return undefined
  if (verdict === false) return { status: 401 }
  if (typeof verdict === 'object' && verdict !== null) {
    const { status, message } = verdict as { status?: unknown; message?: unknown }
    if (
      typeof status === 'number' &&
      Number.isInteger(status) &&
      status >= 400 &&
      status <= 599 &&
      (message === undefined || typeof message === 'string')
    ) {
      return message === undefined ? { status } : { status, message }
    }
  }
  throw new TypeError(
    'Expected `verifyClient` to return true, false or { status: 400-599, message?: string }'
  )
}

/** http and https servers are both net servers (https's is a tls.Server with http's methods). */
function isHttpServer(value: unknown): value is Server | HttpsServer {
  return value instanceof NetServer && typeof (value as Partial<Server>).setTimeout === 'function'
}

/** RFC 6455 §4.2.1: a GET with `Upgrade: websocket` (ws checks the rest of the handshake). */
function isWebSocketUpgrade(request: IncomingMessage): boolean {
  return request.method === 'GET' && request.headers.upgrade?.toLowerCase() === 'websocket'
}

function pathOf(url: string | undefined): string {
  const path = url ?? '/'
  const query = path.indexOf('?')
  return query === -1 ? path : path.slice(0, query)
}

function ignoreSocketError(): void {}

/** verifyClient threw or rejected (told apart from handleProtocols for the 500's body). */
class VerifyClientError extends Error {
  constructor(cause: unknown) {
    super('verifyClient failed', { cause })
  }
}

function destroyAfterAnswer(this: NodeDuplex): void {
  this.destroy()
}

function rethrow(error: unknown): never {
  throw error
}

/** Connections handed to one `for await (const d of server)` loop. */
class ConnectionQueue {
  /** Accepted, not yet yielded, oldest first. */
  readonly #held: WsDuplex[] = []
  /** next() calls waiting for a connection, oldest first, from any iterator. */
  readonly #waiting: { owner: object; resolve: (result: IteratorResult<WsDuplex>) => void }[] = []
  #ended = false
  /** Iterators not yet returned: while there are any, every connection is held for one. */
  iterators = 0

  push(duplex: WsDuplex): void {
    const waiter = this.#waiting.shift()
    if (waiter !== undefined) {
      // The loop gets it after a microtask, frames read with the handshake sooner: their
      // events would go unheard. A held connection keeps reading, to notice its close.
      duplex[kHoldReading]()
      waiter.resolve({ value: duplex, done: false })
      return
    }
    // Nobody has it yet: its failure must not crash the process as an unheard 'error'.
    duplex.on('error', ignoreHeldError)
    this.#held.push(duplex)
  }

  /** A held connection that closed before any loop took it: it is not worth handing out. */
  drop(duplex: WsDuplex): void {
    const index = this.#held.indexOf(duplex)
    if (index !== -1) this.#held.splice(index, 1)
  }

  end(): void {
    this.#ended = true
    for (const waiter of this.#waiting.splice(0)) waiter.resolve({ value: undefined, done: true })
  }

  iterator(): AsyncIterator<WsDuplex> {
    this.iterators++
    let done = false
    const owner = {}
    const finished = { value: undefined, done: true } as const
    return {
      next: () => {
        if (done) return Promise.resolve(finished)
        const duplex = this.#held.shift()
        if (duplex !== undefined) {
          duplex.off('error', ignoreHeldError)
          return Promise.resolve({ value: duplex, done: false })
        }
        if (this.#ended) return Promise.resolve(finished)
        return new Promise((resolve) => this.#waiting.push({ owner, resolve }))
      },
      return: () => {
        if (!done) this.iterators--
        done = true
        // This loop's waiting next() calls end; the other loops keep theirs.
        for (let i = this.#waiting.length - 1; i >= 0; i--) {
          const waiter = this.#waiting[i]
          if (waiter?.owner !== owner) continue
          this.#waiting.splice(i, 1)
          waiter.resolve(finished)
        }
        return Promise.resolve(finished)
      }
    }
  }
}

function ignoreHeldError(): void {}
