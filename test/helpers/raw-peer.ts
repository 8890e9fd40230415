import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { onceWithin, withTimeout } from './wait.js'

// A hand-written RFC 6455 peer over node:net, so tests can assert the exact bytes the library
// puts on the wire and send bytes no well-behaved implementation would. It never answers on its
// own: no automatic pong, no close echo, no TCP close. Tests drive every byte.

export interface Frame {
  fin: boolean
  rsv: number
  opcode: number
  masked: boolean
  payload: Buffer
}

export const Opcode = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const

export interface FrameOptions {
  opcode: number
  payload?: Uint8Array
  fin?: boolean
  /** The three RSV bits as a number 0..7 (RSV1 = 4, RSV2 = 2, RSV3 = 1). */
  rsv?: number
  /** true: a random key; a Buffer: that 4-byte key; false: no mask. */
  mask?: boolean | Buffer
  /** Force the 16- or 64-bit extended length even when a shorter one fits (§5.2 says minimal). */
  length?: 'auto' | '16' | '64'
}

export interface CloseInfo {
  code: number | undefined
  reason: string
}

export interface ReadResult {
  /** Payloads of binary frames and of the continuation frames of binary messages, in order. */
  data: Buffer
  /** Every frame read, control frames and the close frame included. */
  frames: Frame[]
  /** The parsed close frame, if one arrived before TCP closed. */
  close?: CloseInfo
}

export interface RawServerOptions {
  /**
   * Answer with this raw HTTP response (written as latin1, one byte per char, so frame bytes may
   * follow the head) instead of the default 101. `requestHead` is the request line and headers
   * without the final blank line. Return undefined to send the default 101.
   */
  respond?: (requestHead: string) => string | undefined
  /** Sent as Sec-WebSocket-Protocol in the default 101, whatever the client offered. */
  protocol?: string
  /** Accept TCP, read the request, never answer: for handshake-timeout tests. */
  noUpgradeResponse?: boolean
  /** Keep each connection open after the client's FIN, as a server slow to close TCP would. */
  allowHalfOpen?: boolean
}

export interface RawServer {
  url: string
  port: number
  /** The next connection whose request head has been read, whatever the server answered. */
  nextPeer(ms?: number): Promise<RawPeer>
  close(): Promise<void>
}

export interface RawConnectOptions {
  /** Extra request headers; a name matching a default header (any case) replaces it. */
  headers?: Record<string, string>
  protocol?: string
}

type Role = 'client' | 'server'

const EMPTY = Buffer.alloc(0)
// §1.3 / §4.2.2: the GUID appended to Sec-WebSocket-Key before hashing.
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const MAX_HEAD_BYTES = 64 * 1024
const HANDSHAKE_MS = 5000
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** §4.2.2: base64(sha1(key + GUID)). */
export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64')
}

/** The value of header `name` (any case) in an HTTP head, or undefined. */
export function headerValue(head: string, name: string): string | undefined {
  const wanted = name.toLowerCase()
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === wanted) {
      return line.slice(colon + 1).trim()
    }
  }
  return undefined
}

// §5.3: octet i of the payload is XORed with octet i mod 4 of the masking key. Masking and
// unmasking are the same operation.
function applyMask(data: Buffer, key: Buffer): void {
  for (let i = 0; i < data.length; i++) data[i] = data.readUInt8(i) ^ key.readUInt8(i & 3)
}

function maskKey(mask: boolean | Buffer | undefined): Buffer | undefined {
  if (mask === undefined || mask === false) return undefined
  if (mask === true) return randomBytes(4)
  if (mask.length !== 4) throw new RangeError(`a masking key is 4 bytes, got ${mask.length}`)
  return mask
}

/** Encodes one frame (§5.2). Nothing is validated beyond what the header can represent. */
export function encodeFrame(opts: FrameOptions): Buffer {
  const { opcode, fin = true, rsv = 0, length = 'auto' } = opts
  const payload = opts.payload ?? EMPTY
  if (!Number.isInteger(opcode) || opcode < 0 || opcode > 0xf) {
    throw new RangeError(`opcode is 4 bits, got ${opcode}`)
  }
  if (!Number.isInteger(rsv) || rsv < 0 || rsv > 0b111) {
    throw new RangeError(`rsv is 3 bits, got ${rsv}`)
  }
  const key = maskKey(opts.mask)
  const len = payload.length
  // §5.2: 0-125 fit in the 7-bit field, 126 means a 16-bit length follows, 127 a 64-bit one.
  let lengthBits: 7 | 16 | 64
  if (length === '64' || (length === 'auto' && len > 0xffff)) lengthBits = 64
  else if (length === '16' || (length === 'auto' && len > 125)) lengthBits = 16
  else lengthBits = 7
  if (lengthBits === 16 && len > 0xffff) {
    throw new RangeError(`a ${len}-byte payload does not fit a 16-bit length`)
  }
  const extended = lengthBits === 64 ? 8 : lengthBits === 16 ? 2 : 0
  const payloadStart = 2 + extended + (key === undefined ? 0 : 4)
  const out = Buffer.allocUnsafe(payloadStart + len)
  out[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode
  out[1] =
    (key === undefined ? 0 : 0x80) | (lengthBits === 64 ? 127 : lengthBits === 16 ? 126 : len)
  if (lengthBits === 16) out.writeUInt16BE(len, 2)
  else if (lengthBits === 64) out.writeBigUInt64BE(BigInt(len), 2)
  out.set(payload, payloadStart)
  if (key !== undefined) {
    key.copy(out, 2 + extended)
    applyMask(out.subarray(payloadStart), key)
  }
  return out
}

type ParseStep = { frame: Frame; size: number } | { need: number }

// Parses one frame at the start of `buf`, or says how many bytes it needs before trying again.
function parseFrame(buf: Buffer): ParseStep {
  if (buf.length < 2) return { need: 2 }
  const b0 = buf.readUInt8(0)
  const b1 = buf.readUInt8(1)
  const masked = (b1 & 0x80) !== 0
  let len = b1 & 0x7f
  let offset = 2
  if (len === 126) {
    if (buf.length < 4) return { need: 4 }
    len = buf.readUInt16BE(2)
    offset = 4
  } else if (len === 127) {
    if (buf.length < 10) return { need: 10 }
    const big = buf.readBigUInt64BE(2)
    // §5.2 also requires the top bit to be 0; anything past 2^53 cannot be buffered anyway.
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Error(`frame declares a ${big}-byte payload (RFC 6455 §5.2)`)
    }
    len = Number(big)
    offset = 10
  }
  const keyStart = offset
  if (masked) offset += 4
  const size = offset + len
  if (buf.length < size) return { need: size }
  // Copy: the frame must not alias (or, when unmasking, modify) the caller's chunk.
  const payload = Buffer.from(buf.subarray(offset, size))
  if (masked) applyMask(payload, buf.subarray(keyStart, keyStart + 4))
  const frame = {
    fin: (b0 & 0x80) !== 0,
    rsv: (b0 >> 4) & 0b111,
    opcode: b0 & 0xf,
    masked,
    payload
  }
  return { frame, size }
}

/**
 * Incremental frame parser (§5.2): frames may be split across any chunk boundaries. Chunks are
 * only concatenated once enough bytes for the next step are buffered, so feeding a large frame one
 * byte at a time stays linear.
 */
export class FrameParser {
  #chunks: Buffer[] = []
  #buffered = 0
  #need = 2
  #failure: Error | undefined

  push(chunk: Buffer): Frame[] {
    if (this.#failure !== undefined) throw this.#failure
    if (chunk.length > 0) {
      this.#chunks.push(chunk)
      this.#buffered += chunk.length
    }
    const frames: Frame[] = []
    while (this.#buffered >= this.#need) {
      const buf = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks)
      if (buf === undefined) break
      let step: ParseStep
      try {
        step = parseFrame(buf)
      } catch (err) {
        this.#failure = err instanceof Error ? err : new Error(String(err))
        throw this.#failure
      }
      if ('need' in step) {
        this.#chunks = [buf]
        this.#need = step.need
        break
      }
      frames.push(step.frame)
      const rest = buf.subarray(step.size)
      this.#chunks = rest.length > 0 ? [rest] : []
      this.#buffered = rest.length
      this.#need = 2
    }
    return frames
  }
}

/** §5.5.1: a 2-byte big-endian code, then a UTF-8 reason; no code means an empty body. */
export function closePayload(code?: number, reason?: string | Buffer): Buffer {
  const reasonBytes = typeof reason === 'string' ? Buffer.from(reason, 'utf8') : (reason ?? EMPTY)
  if (code === undefined) {
    if (reasonBytes.length > 0) throw new Error('a close reason needs a close code (§5.5.1)')
    return EMPTY
  }
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) {
    throw new RangeError(`a close code is 16 bits, got ${code}`)
  }
  const out = Buffer.allocUnsafe(2 + reasonBytes.length)
  out.writeUInt16BE(code, 0)
  out.set(reasonBytes, 2)
  return out
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** §5.5.1: throws on a 1-byte body or a reason that is not valid UTF-8. */
export function parseClose(payload: Buffer): CloseInfo {
  if (payload.length === 0) return { code: undefined, reason: '' }
  if (payload.length === 1) throw new Error('a 1-byte close payload is invalid (RFC 6455 §5.5.1)')
  let reason: string
  try {
    reason = utf8.decode(payload.subarray(2))
  } catch {
    throw new Error('the close reason is not valid UTF-8 (RFC 6455 §5.5.1)')
  }
  return { code: payload.readUInt16BE(0), reason }
}

function timeoutError(ms: number, what: string): WaitTimeout {
  return new WaitTimeout(`timed out after ${ms} ms waiting for ${what}`)
}

class WaitTimeout extends Error {}
class ConnectionEnded extends Error {}

interface Waiter<T> {
  resolve(value: T): void
  reject(err: Error): void
}

// A FIFO that hands items to bounded waiters. Items pushed while nobody waits are kept, and a
// waiter that times out is removed first, so no item is ever handed to a dead waiter.
class Queue<T> {
  #items: T[] = []
  #waiters: Waiter<T>[] = []
  #end: Error | undefined

  push(item: T): void {
    const waiter = this.#waiters.shift()
    if (waiter === undefined) this.#items.push(item)
    else waiter.resolve(item)
  }

  unshift(items: T[]): void {
    this.#items.unshift(...items)
    while (this.#items.length > 0 && this.#waiters.length > 0) {
      this.#waiters.shift()?.resolve(this.#items.shift() as T)
    }
  }

  /** No more items will come; waiters reject with `reason` once the queue is drained. */
  end(reason: Error): void {
    if (this.#end !== undefined) return
    this.#end = reason
    for (const waiter of this.#waiters.splice(0)) waiter.reject(reason)
  }

  next(ms: number, what: string): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift() as T)
    if (this.#end !== undefined) return Promise.reject(this.#end)
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.#waiters.indexOf(waiter)
        if (index !== -1) this.#waiters.splice(index, 1)
        reject(timeoutError(ms, what))
      }, ms)
      const waiter: Waiter<T> = {
        resolve: (value) => {
          clearTimeout(timer)
          resolve(value)
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        }
      }
      this.#waiters.push(waiter)
    })
  }
}

/**
 * One side of an upgraded connection. Frames are parsed and queued as they arrive, whether or not
 * anyone is waiting, so none are lost between calls.
 */
export class RawPeer {
  readonly socket: Socket
  readonly role: Role
  /** The HTTP head of the handshake: the request a server peer read, the 101 a client read. */
  readonly httpHead: string
  #parser = new FrameParser()
  #frames = new Queue<Frame>()
  #closed: Promise<void>
  #socketError: Error | undefined

  /** `head`: bytes that arrived after the HTTP head in the same TCP chunk. */
  constructor(socket: Socket, role: Role, options: { head?: Buffer; httpHead?: string } = {}) {
    this.socket = socket
    this.role = role
    this.httpHead = options.httpHead ?? ''
    this.#closed = new Promise<void>((resolve) => {
      if (socket.closed) resolve()
      else socket.once('close', () => resolve())
    })
    socket.setNoDelay(true)
    socket.on('error', (err) => {
      this.#socketError ??= err
    })
    socket.on('end', () => this.#endFrames('sent FIN'))
    socket.on('close', () => this.#endFrames('closed'))
    if (socket.closed) this.#endFrames('closed')
    if (options.head !== undefined && options.head.length > 0) this.#receive(options.head)
    socket.on('data', (chunk: Buffer) => this.#receive(chunk))
    // The handshake pauses the socket while handing it over; start reading.
    socket.resume()
  }

  /** The first socket error (e.g. ECONNRESET), if any. */
  get socketError(): Error | undefined {
    return this.#socketError
  }

  #receive(chunk: Buffer): void {
    let frames: Frame[]
    try {
      frames = this.#parser.push(chunk)
    } catch (err) {
      this.#frames.end(err instanceof Error ? err : new Error(String(err)))
      return
    }
    for (const frame of frames) this.#frames.push(frame)
  }

  #endFrames(how: string): void {
    const cause = this.#socketError === undefined ? '' : ` (${this.#socketError.message})`
    this.#frames.end(new ConnectionEnded(`the peer's TCP connection ${how}${cause}`))
  }

  /** Writes one frame; `mask` defaults to true for a client and false for a server (§5.3). */
  sendFrame(opts: FrameOptions): void {
    this.writeRaw(encodeFrame({ ...opts, mask: opts.mask ?? this.role === 'client' }))
  }

  sendBinary(data: Uint8Array): void {
    this.sendFrame({ opcode: Opcode.Binary, payload: data })
  }

  sendText(str: string): void {
    this.sendFrame({ opcode: Opcode.Text, payload: Buffer.from(str, 'utf8') })
  }

  sendClose(code?: number, reason?: string | Buffer): void {
    this.sendFrame({ opcode: Opcode.Close, payload: closePayload(code, reason) })
  }

  sendPing(data: Uint8Array | string = EMPTY): void {
    this.sendFrame({ opcode: Opcode.Ping, payload: toBytes(data) })
  }

  sendPong(data: Uint8Array | string = EMPTY): void {
    this.sendFrame({ opcode: Opcode.Pong, payload: toBytes(data) })
  }

  writeRaw(bytes: Uint8Array): void {
    this.socket.write(bytes)
  }

  /** The next frame, in arrival order; rejects after `ms`, or once TCP ends with none queued. */
  nextFrame(ms = 2000): Promise<Frame> {
    return this.#frames.next(ms, `a frame from the ${otherRole(this.role)}`)
  }

  /**
   * Reads frames until a close frame arrives (resolving right away, without waiting for TCP) or
   * the TCP connection ends (then `close` is undefined). On timeout the frames read so far go back
   * to the queue, so a later call still sees them.
   */
  async readUntilClose(ms = 5000): Promise<ReadResult> {
    const deadline = Date.now() + ms
    const frames: Frame[] = []
    const data: Buffer[] = []
    let message: number | undefined // opcode of the fragmented message in progress (§5.4)
    try {
      for (;;) {
        let frame: Frame
        try {
          frame = await this.#frames.next(Math.max(0, deadline - Date.now()), 'a close frame')
        } catch (err) {
          if (err instanceof ConnectionEnded) return { data: Buffer.concat(data), frames }
          if (err instanceof WaitTimeout) {
            const got = `${frames.length} frames, ${Buffer.concat(data).length} data bytes`
            throw timeoutError(ms, `a close frame or TCP close (got ${got})`)
          }
          throw err
        }
        frames.push(frame)
        if (frame.opcode === Opcode.Close) {
          return { data: Buffer.concat(data), frames, close: parseClose(frame.payload) }
        }
        if (frame.opcode === Opcode.Binary || frame.opcode === Opcode.Text) {
          message = frame.fin ? undefined : frame.opcode
          if (frame.opcode === Opcode.Binary) data.push(frame.payload)
        } else if (frame.opcode === Opcode.Continuation) {
          if (message !== Opcode.Text) data.push(frame.payload)
          if (frame.fin) message = undefined
        }
      }
    } catch (err) {
      this.#frames.unshift(frames)
      throw err
    }
  }

  /** Resolves once the TCP socket has emitted 'close'. */
  tcpClosed(ms = 5000): Promise<void> {
    if (this.socket.closed) return Promise.resolve()
    return withTimeout(
      this.#closed,
      ms,
      `the TCP connection to the ${otherRole(this.role)} to close`
    )
  }

  /** Sends a TCP FIN. */
  end(): void {
    this.socket.end()
  }

  /** Aborts the connection with a TCP RST. */
  reset(): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy()
  }

  /** Stops reading from TCP: the kernel buffers fill and the other side sees backpressure. */
  pause(): void {
    this.socket.pause()
  }

  resume(): void {
    this.socket.resume()
  }
}

function otherRole(role: Role): Role {
  return role === 'client' ? 'server' : 'client'
}

function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data
}

// Reads an HTTP head (up to the blank line). On success the socket is left paused, with its
// listeners removed, so that no byte is emitted before the RawPeer takes it over.
function readHttpHead(
  socket: Socket,
  what: string,
  ms?: number
): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered = EMPTY
    const cleanup = (): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('error', onError)
      socket.off('close', onClose)
    }
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) {
        if (buffered.length > MAX_HEAD_BYTES) {
          cleanup()
          reject(new Error(`${what} is longer than ${MAX_HEAD_BYTES} bytes`))
        }
        return
      }
      socket.pause()
      cleanup()
      resolve({ head: buffered.toString('latin1', 0, end), rest: buffered.subarray(end + 4) })
    }
    const onError = (err: Error): void => {
      cleanup()
      reject(err)
    }
    const onClose = (): void => {
      cleanup()
      reject(new Error(`the connection closed before ${what} was complete`))
    }
    const timer =
      ms === undefined
        ? undefined
        : setTimeout(() => {
            cleanup()
            reject(timeoutError(ms, what))
          }, ms)
    socket.on('data', onData)
    socket.on('error', onError)
    socket.on('close', onClose)
  })
}

function upgradeResponse(key: string, protocol: string | undefined): string {
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${acceptKey(key)}`
  ]
  if (protocol !== undefined) lines.push(`Sec-WebSocket-Protocol: ${protocol}`)
  return lines.join('\r\n') + '\r\n\r\n'
}

/** A raw RFC 6455 server on 127.0.0.1, port 0. */
export async function startRawServer(opts: RawServerOptions = {}): Promise<RawServer> {
  const sockets = new Set<Socket>()
  const peers = new Queue<RawPeer>()

  const answer = (socket: Socket, head: string): void => {
    if (opts.noUpgradeResponse === true) return
    const custom = opts.respond?.(head)
    if (custom !== undefined) {
      socket.write(custom, 'latin1')
      // Anything but a 101 ends the exchange, as an HTTP/1.1 server sending Connection: close.
      if (!/^HTTP\/\d\.\d 101\b/.test(custom)) socket.end()
      return
    }
    const key = headerValue(head, 'sec-websocket-key')
    if (key === undefined) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    socket.write(upgradeResponse(key, opts.protocol))
  }

  const server = createServer({ allowHalfOpen: opts.allowHalfOpen === true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    readHttpHead(socket, 'the HTTP request head').then(
      ({ head, rest }) => {
        answer(socket, head)
        peers.push(new RawPeer(socket, 'server', { head: rest, httpHead: head }))
      },
      () => socket.destroy()
    )
  })
  server.listen(0, '127.0.0.1')
  await onceWithin(server, 'listening')
  const { port } = server.address() as AddressInfo

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      peers.end(new Error('the raw server is closed'))
      for (const socket of sockets) socket.destroy()
      const closed = new Promise<void>((resolve, reject) => {
        server.close((err) => (err === undefined ? resolve() : reject(err)))
      })
      await withTimeout(closed, 2000, 'the raw server to close')
    })()
    return closing
  }

  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    nextPeer: (ms = 2000) => peers.next(ms, 'a connection to the raw server'),
    close
  }
}

// §4.1: the checks a client makes on the server's handshake response.
function checkUpgradeResponse(head: string, key: string, offered: string[]): string | undefined {
  const status = head.split('\r\n', 1)[0] ?? ''
  if (!/^HTTP\/1\.1 101\b/.test(status)) return `expected a 101 response, got "${status}"`
  if (headerValue(head, 'upgrade')?.toLowerCase() !== 'websocket') {
    return 'the Upgrade header is not "websocket"'
  }
  const connection = headerValue(head, 'connection') ?? ''
  if (!connection.split(',').some((token) => token.trim().toLowerCase() === 'upgrade')) {
    return 'the Connection header has no "Upgrade" token'
  }
  const accept = headerValue(head, 'sec-websocket-accept')
  if (accept !== acceptKey(key)) {
    return `Sec-WebSocket-Accept is ${accept ?? 'missing'}, expected ${acceptKey(key)} (§4.2.2)`
  }
  const protocol = headerValue(head, 'sec-websocket-protocol')
  if (protocol !== undefined && !offered.includes(protocol)) {
    return `the server chose subprotocol "${protocol}", which was not offered`
  }
  return undefined
}

/** Performs a client handshake (§4.1) against a server on a loopback address. */
export async function rawConnect(url: string, opts: RawConnectOptions = {}): Promise<RawPeer> {
  const target = new URL(url)
  if (target.protocol !== 'ws:') throw new Error(`rawConnect speaks ws:// only, got ${url}`)
  if (!LOOPBACK_HOSTS.has(target.hostname)) {
    throw new Error(`rawConnect only connects to loopback addresses, got ${url}`)
  }
  const headers = new Map<string, [string, string]>()
  const setHeader = (name: string, value: string): void => {
    headers.set(name.toLowerCase(), [name, value])
  }
  setHeader('Host', target.host)
  setHeader('Upgrade', 'websocket')
  setHeader('Connection', 'Upgrade')
  // §4.1: a random 16-byte nonce, base64-encoded.
  setHeader('Sec-WebSocket-Key', randomBytes(16).toString('base64'))
  setHeader('Sec-WebSocket-Version', '13')
  if (opts.protocol !== undefined) setHeader('Sec-WebSocket-Protocol', opts.protocol)
  for (const [name, value] of Object.entries(opts.headers ?? {})) setHeader(name, value)
  const key = headers.get('sec-websocket-key')?.[1] ?? ''
  const offered = (headers.get('sec-websocket-protocol')?.[1] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')

  const path = `${target.pathname}${target.search}`
  const lines = [...headers.values()].map(([name, value]) => `${name}: ${value}\r\n`)
  const request = `GET ${path} HTTP/1.1\r\n${lines.join('')}\r\n`

  const socket = connect({
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: +target.port || 80
  })
  socket.write(request, 'latin1')
  let response: { head: string; rest: Buffer }
  try {
    response = await readHttpHead(socket, 'the handshake response', HANDSHAKE_MS)
  } catch (err) {
    socket.destroy()
    throw err
  }
  const problem = checkUpgradeResponse(response.head, key, offered)
  if (problem !== undefined) {
    socket.destroy()
    throw new Error(`rawConnect(${url}): ${problem}\n${response.head}`)
  }
  return new RawPeer(socket, 'client', { head: response.rest, httpHead: response.head })
}
