import { connect as netConnect } from 'node:net'
import fc from 'fast-check'
import type { WsDuplex } from '../../lib/index.js'
import { encodeFrame, Opcode } from './raw-peer.js'
import { withTimeout } from './wait.js'

// Generated hostile input for a WebSocket endpoint, and a model of what RFC 6455 (as ws
// implements it) and the README say must happen to it. The model is the oracle: it walks the
// frames in order, the way the receiver does, and stops at the first frame that decides the
// outcome.

/** The side under test: its peer is the hostile one. */
export type Role = 'server' | 'client'

export interface HFrame {
  opcode: number
  fin: boolean
  rsv: number
  /** Masked when it must not be (to a client) or unmasked when it must be (to a server). */
  wrongMask: boolean
  payload: Buffer
  length: 'auto' | '16' | '64'
  /** A 64-bit length to declare instead of the payload's; only the header goes on the wire. */
  declared?: bigint
}

export type Ending =
  /** The last frame is a close frame (valid or not); then wait for the other side. */
  | { kind: 'close'; frame: HFrame }
  /** TCP FIN after the frames. */
  | { kind: 'fin' }
  /** TCP RST after the frames: nothing about what the other side read is deterministic. */
  | { kind: 'reset' }
  /** The first `keep` bytes of one more frame, then FIN. */
  | { kind: 'truncated'; frame: HFrame; keep: number }

export interface HostileCase {
  frames: HFrame[]
  ending: Ending
  /** What the hostile peer does once it gets a close frame: echo one and FIN, or just FIN. */
  answer: 'echo' | 'fin'
}

export type ExpectedCode =
  | 'ERR_PROTOCOL'
  | 'ERR_TEXT_FRAME'
  | 'ERR_PAYLOAD_TOO_LARGE'
  | 'ERR_ABNORMAL_CLOSURE'
  | 'ERR_PEER_CLOSED_WITH_ERROR'

export type Expected =
  | {
      kind: 'clean'
      /** The close code echoed on the wire; undefined for an empty close frame (1005). */
      wire: number | undefined
      data: Buffer
      why: string
    }
  | {
      kind: 'error'
      code: ExpectedCode
      /** The error's `closeCode`. */
      closeCode: number
      /** The first close frame on the wire: a code, undefined for an empty one, 'none'. */
      wire: number | undefined | 'none'
      data: Buffer
      why: string
    }
  /** After a reset: any documented error, and a prefix of `data`. */
  | { kind: 'reset'; data: Buffer; why: string }

export const DOCUMENTED_ERRORS: readonly string[] = [
  'ERR_PROTOCOL',
  'ERR_TEXT_FRAME',
  'ERR_PAYLOAD_TOO_LARGE',
  'ERR_ABNORMAL_CLOSURE',
  'ERR_PEER_CLOSED_WITH_ERROR',
  'ERR_CLOSE_TIMEOUT'
]

const EMPTY = Buffer.alloc(0)
const utf8 = new TextDecoder('utf-8', { fatal: true })

function isUtf8(bytes: Buffer): boolean {
  try {
    utf8.decode(bytes)
    return true
  } catch {
    return false
  }
}

/** §7.4: the codes a peer may put in a close frame (ws's isValidStatusCode). */
export function isValidWireCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  )
}

/** The 7-bit length field the frame carries (126 and 127 announce 16- and 64-bit lengths). */
function lengthField(frame: HFrame): number {
  if (frame.declared !== undefined || frame.length === '64') return 127
  const len = frame.payload.length
  if (frame.length === '16') return 126
  return len > 0xffff ? 127 : len > 125 ? 126 : len
}

/** Encodes a frame as the hostile peer of `role` sends it. */
export function encodeHostile(frame: HFrame, role: Role): Buffer {
  const mask = role === 'server' ? !frame.wrongMask : frame.wrongMask
  if (frame.declared !== undefined) {
    const header = encodeFrame({
      opcode: frame.opcode,
      fin: frame.fin,
      rsv: frame.rsv,
      mask,
      payload: EMPTY,
      length: '64'
    })
    header.writeBigUInt64BE(frame.declared, 2)
    return header
  }
  return encodeFrame({
    opcode: frame.opcode,
    fin: frame.fin,
    rsv: frame.rsv,
    mask,
    payload: frame.payload,
    length: frame.length
  })
}

/** Every byte the hostile peer writes before its ending (FIN, RST) or its wait. */
export function caseBytes(c: HostileCase, role: Role): Buffer {
  const parts = c.frames.map((frame) => encodeHostile(frame, role))
  if (c.ending.kind === 'close') parts.push(encodeHostile(c.ending.frame, role))
  if (c.ending.kind === 'truncated') {
    parts.push(encodeHostile(c.ending.frame, role).subarray(0, c.ending.keep))
  }
  return Buffer.concat(parts)
}

type Verdict =
  | { kind: 'close'; code: number | undefined }
  | { kind: 'ws'; wire: number; code: ExpectedCode; why: string }
  | { kind: 'text' }

interface ReceiverState {
  /** Opcode of the fragmented message in progress, 0 when none (§5.4). */
  fragmented: number
  total: number
  parts: Buffer[]
  delivered: Buffer[]
}

const protocol = (why: string): Verdict => ({ kind: 'ws', wire: 1002, code: 'ERR_PROTOCOL', why })

/** The checks made on the first two header bytes (§5.2, §5.4, §5.5); all of them are 1002. */
function headerVerdict(frame: HFrame, state: ReceiverState): Verdict | undefined {
  if (frame.rsv !== 0) return protocol('a reserved bit is set (§5.2)')
  const { opcode } = frame
  if (opcode === Opcode.Continuation) {
    if (state.fragmented === 0) return protocol('a continuation frame with nothing to continue')
  } else if (opcode === Opcode.Text || opcode === Opcode.Binary) {
    if (state.fragmented !== 0) return protocol('a new data frame inside a fragmented message')
  } else if (opcode >= Opcode.Close && opcode <= Opcode.Pong) {
    if (!frame.fin) return protocol('a fragmented control frame (§5.5)')
    const field = lengthField(frame)
    if (field > 125) return protocol('a control frame longer than 125 bytes (§5.5)')
    if (opcode === Opcode.Close && field === 1) return protocol('a 1-byte close payload (§5.5.1)')
  } else {
    return protocol(`the reserved opcode ${opcode} (§5.2)`)
  }
  if (frame.wrongMask) return protocol('wrong masking (§5.1, §5.3)')
  return undefined
}

/** One complete frame through the receiver; a verdict when it decides the outcome. */
function step(frame: HFrame, state: ReceiverState, maxPayload: number): Verdict | undefined {
  const header = headerVerdict(frame, state)
  if (header !== undefined) return header
  const opcode = frame.opcode === Opcode.Continuation ? state.fragmented : frame.opcode
  if (!frame.fin && state.fragmented === 0) state.fragmented = opcode
  const declared = frame.declared
  if (declared !== undefined && declared > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { kind: 'ws', wire: 1009, code: 'ERR_PAYLOAD_TOO_LARGE', why: 'a length over 2^53' }
  }
  const length = declared === undefined ? frame.payload.length : Number(declared)
  if (length > 0 && opcode < Opcode.Close) {
    state.total += length
    if (state.total > maxPayload) {
      return { kind: 'ws', wire: 1009, code: 'ERR_PAYLOAD_TOO_LARGE', why: 'over maxPayload' }
    }
  }
  if (declared !== undefined) throw new Error('generator bug: an accepted declared length')
  if (opcode === Opcode.Close) {
    if (frame.payload.length === 0) return { kind: 'close', code: undefined }
    const code = frame.payload.readUInt16BE(0)
    if (!isValidWireCloseCode(code)) return protocol(`the close code ${code} (§7.4)`)
    if (!isUtf8(frame.payload.subarray(2))) {
      return { kind: 'ws', wire: 1007, code: 'ERR_PROTOCOL', why: 'a non-UTF-8 close reason' }
    }
    return { kind: 'close', code }
  }
  if (opcode === Opcode.Ping || opcode === Opcode.Pong) return undefined
  state.parts.push(frame.payload)
  if (!frame.fin) return undefined
  const message = Buffer.concat(state.parts)
  state.parts = []
  state.total = 0
  state.fragmented = 0
  if (opcode === Opcode.Binary) {
    state.delivered.push(message)
    return undefined
  }
  if (!isUtf8(message)) {
    return { kind: 'ws', wire: 1007, code: 'ERR_PROTOCOL', why: 'a non-UTF-8 text message' }
  }
  return { kind: 'text' }
}

/** What must happen to the side under test when its peer sends `c`. */
export function expectedOutcome(c: HostileCase, maxPayload: number): Expected {
  const state: ReceiverState = { fragmented: 0, total: 0, parts: [], delivered: [] }
  const frames = c.ending.kind === 'close' ? [...c.frames, c.ending.frame] : c.frames
  let verdict: Verdict | undefined
  for (const frame of frames) {
    verdict = step(frame, state, maxPayload)
    if (verdict !== undefined) break
  }
  const data = Buffer.concat(state.delivered)
  if (verdict === undefined && c.ending.kind === 'truncated' && c.ending.keep >= 2) {
    verdict = headerVerdict(c.ending.frame, state)
  }
  if (c.ending.kind === 'reset') return { kind: 'reset', data, why: 'a TCP reset' }
  if (verdict === undefined) {
    if (c.ending.kind === 'close') throw new Error('model bug: a close frame decided nothing')
    const why = c.ending.kind === 'fin' ? 'FIN without a close frame' : 'a truncated frame'
    return { kind: 'error', code: 'ERR_ABNORMAL_CLOSURE', closeCode: 1006, wire: 'none', data, why }
  }
  switch (verdict.kind) {
    case 'close': {
      const code = verdict.code ?? 1005
      const why = `the peer closed with ${code}`
      if (code === 1000 || code === 1001 || code === 1005) {
        return { kind: 'clean', wire: verdict.code, data, why }
      }
      return {
        kind: 'error',
        code: 'ERR_PEER_CLOSED_WITH_ERROR',
        closeCode: code,
        wire: code,
        data,
        why
      }
    }
    case 'text':
      return {
        kind: 'error',
        code: 'ERR_TEXT_FRAME',
        closeCode: 1003,
        wire: 1003,
        data,
        why: 'text'
      }
    case 'ws':
      return {
        kind: 'error',
        code: verdict.code,
        closeCode: verdict.wire,
        wire: verdict.wire,
        data,
        why: verdict.why
      }
  }
}

// ------------------------------------------------------------------------------ generators

const bytes = (max: number, min = 0): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a))

const lengthMode = fc.constantFrom<HFrame['length']>('auto', 'auto', '16', '64')

function frame(partial: Partial<HFrame> & { opcode: number }): HFrame {
  return { fin: true, rsv: 0, wrongMask: false, payload: EMPTY, length: 'auto', ...partial }
}

const ping = fc
  .record({ opcode: fc.constantFrom(Opcode.Ping, Opcode.Pong), payload: bytes(20) })
  .map((p) => frame(p))

/** A valid data message of 1-4 fragments, maybe with pings and pongs between them. */
function message(opcode: number, body: fc.Arbitrary<Buffer>): fc.Arbitrary<HFrame[]> {
  return fc
    .record({
      body,
      cuts: fc.array(fc.nat(), { maxLength: 3 }),
      lengths: fc.array(lengthMode, { minLength: 4, maxLength: 4 }),
      controls: fc.array(fc.option(ping, { freq: 3 }), { minLength: 4, maxLength: 4 })
    })
    .map(({ body, cuts, lengths, controls }) => {
      const at = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b)
      const bounds = [0, ...at, body.length]
      const frames: HFrame[] = []
      for (let i = 0; i + 1 < bounds.length; i++) {
        const last = i + 2 === bounds.length
        frames.push(
          frame({
            opcode: i === 0 ? opcode : Opcode.Continuation,
            fin: last,
            payload: body.subarray(bounds[i], bounds[i + 1]),
            length: lengths[i] ?? 'auto'
          })
        )
        const control = controls[i]
        if (!last && control !== undefined && control !== null) frames.push(control)
      }
      return frames
    })
}

const binaryMessage = message(Opcode.Binary, bytes(300))
const validText = fc.string({ unit: 'binary', maxLength: 30 }).map((s) => Buffer.from(s, 'utf8'))
const badUtf8 = fc
  .tuple(
    validText,
    fc.constantFrom(
      [0xff],
      [0xc3],
      [0xc0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xe2, 0x82]
    ),
    validText
  )
  .map(([a, bad, b]) => Buffer.concat([a, Buffer.from(bad), b]))

const validCloseCode = fc.oneof(
  fc.constantFrom(1000, 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014),
  fc.integer({ min: 3000, max: 4999 })
)
const invalidCloseCode = fc.oneof(
  fc.integer({ min: 0, max: 999 }),
  fc.constantFrom(1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535),
  fc.integer({ min: 1015, max: 2999 }),
  fc.integer({ min: 5000, max: 65535 })
)
const reason = fc.string({ unit: 'binary', maxLength: 20 }).map((s) => Buffer.from(s, 'utf8'))

function closeFrame(code: number, why: Buffer): HFrame {
  const payload = Buffer.alloc(2 + why.length)
  payload.writeUInt16BE(code, 0)
  why.copy(payload, 2)
  return frame({ opcode: Opcode.Close, payload })
}

export const validClose: fc.Arbitrary<HFrame> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(frame({ opcode: Opcode.Close })) },
  { weight: 4, arbitrary: fc.tuple(validCloseCode, reason).map(([c, r]) => closeFrame(c, r)) }
)

export const badClose: fc.Arbitrary<HFrame> = fc.oneof(
  fc.tuple(invalidCloseCode, reason).map(([c, r]) => closeFrame(c, r)),
  fc
    .tuple(
      validCloseCode,
      badUtf8.filter((b) => b.length <= 100)
    )
    .map(([c, r]) => closeFrame(c, r)),
  bytes(1, 1).map((payload) => frame({ opcode: Opcode.Close, payload }))
)

/** One frame that breaks §5.2 (opcode, RSV bits) or §5.1 (masking). */
const badHeader: fc.Arbitrary<HFrame[]> = fc.oneof(
  fc
    .record({
      opcode: fc.constantFrom(3, 4, 5, 6, 7, 11, 12, 13, 14, 15),
      fin: fc.boolean(),
      payload: bytes(40)
    })
    .map((p) => [frame(p)]),
  fc
    .record({
      opcode: fc.constantFrom(Opcode.Binary, Opcode.Text, Opcode.Ping, Opcode.Continuation),
      rsv: fc.integer({ min: 1, max: 7 }),
      payload: bytes(40)
    })
    .map((p) => [frame(p)]),
  fc
    .record({ opcode: fc.constantFrom(Opcode.Binary, Opcode.Ping), payload: bytes(40) })
    .map((p) => [frame({ ...p, wrongMask: true })])
)

/** Control frames that are fragmented or longer than 125 bytes, or use an extended length. */
const badControl: fc.Arbitrary<HFrame[]> = fc.oneof(
  fc
    .record({ opcode: fc.constantFrom(8, 9, 10), payload: bytes(20) })
    .map((p) => [frame({ ...p, fin: false })]),
  fc.record({ opcode: fc.constantFrom(8, 9, 10), payload: bytes(200, 126) }).map((p) => [frame(p)]),
  fc
    .record({
      opcode: fc.constantFrom(9, 10),
      payload: bytes(20),
      length: fc.constantFrom<HFrame['length']>('16', '64')
    })
    .map((p) => [frame(p)])
)

/** Fragmentation out of order (§5.4): orphan continuations, data frames inside a message. */
const badFragmentation: fc.Arbitrary<HFrame[]> = fc.oneof(
  fc
    .record({ fin: fc.boolean(), payload: bytes(20) })
    .map((p) => [frame({ opcode: Opcode.Continuation, ...p })]),
  fc
    .record({
      first: fc.constantFrom(Opcode.Binary, Opcode.Text),
      second: fc.constantFrom(Opcode.Binary, Opcode.Text),
      a: bytes(20),
      b: bytes(20)
    })
    .map(({ first, second, a, b }) => [
      frame({ opcode: first, fin: false, payload: a }),
      frame({ opcode: second, payload: b })
    ]),
  // Opens a message and leaves it open: whatever follows decides.
  bytes(20).map((payload) => [frame({ opcode: Opcode.Binary, fin: false, payload })])
)

/** A message larger than maxPayload: declared in a 16/64-bit header, or sent in fragments. */
function oversized(maxPayload: number): fc.Arbitrary<HFrame[]> {
  return fc.oneof(
    { weight: 4, arbitrary: declared(BigInt(maxPayload) + 1n, BigInt(Number.MAX_SAFE_INTEGER)) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 2, max: 3 }).map((n) => {
        const size = Math.ceil((maxPayload + 1) / n)
        return Array.from({ length: n }, (_, i) =>
          frame({
            opcode: i === 0 ? Opcode.Binary : Opcode.Continuation,
            fin: i === n - 1,
            payload: Buffer.alloc(size, i)
          })
        )
      })
    }
  )
}

/** One data-frame header declaring a 64-bit length in [min, max]; the payload never follows. */
export function declared(min: bigint, max: bigint): fc.Arbitrary<HFrame[]> {
  return fc
    .record({
      length: fc.bigInt({ min, max }),
      opcode: fc.constantFrom(Opcode.Binary, Opcode.Binary, Opcode.Text),
      fin: fc.boolean()
    })
    .map(({ length, opcode, fin }) => [frame({ opcode, fin, declared: length })])
}

export interface CaseOptions {
  maxPayload: number
  maxSegments?: number
}

/** A sequence mixing every category, valid binary messages weighted up so errors come late. */
export function hostileCase(options: CaseOptions): fc.Arbitrary<HostileCase> {
  const segment: fc.Arbitrary<HFrame[]> = fc.oneof(
    { weight: 10, arbitrary: binaryMessage },
    { weight: 3, arbitrary: ping.map((p) => [p]) },
    { weight: 2, arbitrary: message(Opcode.Text, validText) },
    { weight: 1, arbitrary: message(Opcode.Text, badUtf8) },
    { weight: 2, arbitrary: badHeader },
    { weight: 2, arbitrary: badControl },
    { weight: 2, arbitrary: badFragmentation },
    { weight: 1, arbitrary: badClose.map((f) => [f]) },
    { weight: 1, arbitrary: validClose.map((f) => [f]) },
    { weight: 1, arbitrary: oversized(options.maxPayload) }
  )
  const truncatable = fc
    .record({ payload: bytes(300, 1), length: lengthMode, cut: fc.nat() })
    .map(({ payload, length, cut }): Ending => {
      const f = frame({ opcode: Opcode.Binary, payload, length })
      const size = encodeHostile(f, 'client').length
      return { kind: 'truncated', frame: f, keep: 1 + (cut % (size - 1)) }
    })
  const ending: fc.Arbitrary<Ending> = fc.oneof(
    { weight: 5, arbitrary: validClose.map((f): Ending => ({ kind: 'close', frame: f })) },
    { weight: 2, arbitrary: badClose.map((f): Ending => ({ kind: 'close', frame: f })) },
    { weight: 2, arbitrary: fc.constant<Ending>({ kind: 'fin' }) },
    { weight: 1, arbitrary: fc.constant<Ending>({ kind: 'reset' }) },
    { weight: 2, arbitrary: truncatable }
  )
  return fc.record({
    frames: fc
      .array(segment, { maxLength: options.maxSegments ?? 6 })
      .map((segments) => segments.flat()),
    ending,
    answer: fc.constantFrom<HostileCase['answer']>('echo', 'fin')
  })
}

// ------------------------------------------------------------------------ observing a duplex

export interface Outcome {
  data: Buffer
  error: unknown
  ended: boolean
  /** Listeners still on the wrapped ws socket for the events WsDuplex listens to. */
  wsListeners: number
}

const WS_EVENTS = ['open', 'message', 'ping', 'pong', 'error', 'close', 'unexpected-response']

/** Reads a WsDuplex from now on and settles on its 'close', whatever ends it. */
export function watchDuplex(duplex: WsDuplex): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let error: unknown
    let ended = false
    duplex.on('data', (chunk: Buffer) => chunks.push(chunk))
    duplex.on('error', (e: unknown) => {
      error = e
    })
    duplex.on('end', () => {
      ended = true
    })
    duplex.on('close', () => {
      const socket = duplex.socket
      const wsListeners = WS_EVENTS.reduce((n, name) => n + socket.listenerCount(name), 0)
      resolve({ data: Buffer.concat(chunks), error, ended, wsListeners })
    })
  })
}

// ------------------------------------------------------------------------- raw TCP exchanges

export interface TcpExchange {
  /** Everything the server wrote back. */
  response: Buffer
  /** Milliseconds from the write to TCP close. */
  ms: number
}

/**
 * Writes `bytes` to a fresh TCP connection, FINs unless `fin` is false, and collects the answer
 * until the server closes the connection (bounded by `ms`).
 */
export async function tcpExchange(
  port: number,
  bytes: Uint8Array,
  options: { fin?: boolean; ms?: number } = {}
): Promise<TcpExchange> {
  const socket = netConnect({ host: '127.0.0.1', port })
  const chunks: Buffer[] = []
  const started = Date.now()
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.write(bytes)
  if (options.fin !== false) socket.end()
  try {
    await withTimeout(closed, options.ms ?? 3000, 'the server to close a raw TCP connection')
  } finally {
    socket.destroy()
  }
  return { response: Buffer.concat(chunks), ms: Date.now() - started }
}

/** A well-formed upgrade request (§4.1) for `port`, as a string. */
export function upgradeRequest(port: number, key = 'dGhlIHNhbXBsZSBub25jZQ=='): string {
  return (
    'GET / HTTP/1.1\r\n' +
    `Host: 127.0.0.1:${port}\r\n` +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\n` +
    'Sec-WebSocket-Version: 13\r\n\r\n'
  )
}

/** Counts of the active resources that betray a leak. */
export function resourceCounts(): { sockets: number; timers: number } {
  const info = process.getActiveResourcesInfo()
  return {
    sockets: info.filter((r) => r === 'TCPSocketWrap').length,
    timers: info.filter((r) => r === 'Timeout').length
  }
}

/** A few valid binary messages, possibly fragmented, with pings between them. */
export const validPrefix: fc.Arbitrary<HFrame[]> = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: binaryMessage },
      ping.map((p) => [p])
    ),
    {
      maxLength: 3
    }
  )
  .map((segments) => segments.flat())

/** `count` fragments of one binary message, `size` bytes each (deterministic content). */
export function fragments(count: number, size: number): HFrame[] {
  return Array.from({ length: count }, (_, i) =>
    frame({
      opcode: i === 0 ? Opcode.Binary : Opcode.Continuation,
      fin: i === count - 1,
      payload: Buffer.alloc(size, i & 0xff)
    })
  )
}

export { closeFrame, frame }
