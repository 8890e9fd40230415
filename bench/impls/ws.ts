/**
 * ws used directly, as a careful application would: one `send()` per write, paced by
 * `bufferedAmount` with the send callback as the wake-up, and `pause()`/`resume()` on the reader.
 * This is the WebSocket baseline every other WebSocket implementation is compared with.
 */
import { once } from 'node:events'
import { WebSocket, WebSocketServer } from 'ws'
import { isAsyncIterable, pauser, tcpPort } from '../adapters.js'
import type { Chunks, Conn, Impl, OnChunk } from '../types.js'

/**
 * Write window: stop calling send() while more than this is queued in user space (ws's sender plus
 * the socket's writable buffer); the kernel's socket buffer keeps the wire busy meanwhile. Windows
 * from 64 KiB to 16 MiB measured the same within noise on the 2-core dev box; 256 KiB it is.
 */
export const WINDOW = 256 * 1024

const SEND_OPTIONS = { binary: true, compress: false } as const

function wsConn(ws: WebSocket): Conn {
  const closed = new Promise<void>((resolve, reject) => {
    ws.once('close', () => resolve())
    ws.once('error', reject)
  })
  closed.catch(() => undefined)

  /** Send one message; returns a promise only when the window is full (resolves once flushed). */
  const write = (chunk: Uint8Array): Promise<void> | undefined => {
    if (ws.readyState !== WebSocket.OPEN) throw new Error('WebSocket closed while sending')
    if (ws.bufferedAmount < WINDOW) {
      ws.send(chunk, SEND_OPTIONS)
      return undefined
    }
    return new Promise<void>((resolve, reject) => {
      ws.send(chunk, SEND_OPTIONS, (err) => (err == null ? resolve() : reject(err)))
    })
  }

  const send = async (chunks: Chunks): Promise<void> => {
    if (isAsyncIterable(chunks)) {
      for await (const chunk of chunks) await write(chunk)
    } else {
      for (const chunk of chunks) {
        const full = write(chunk)
        if (full !== undefined) await full
      }
    }
    ws.close(1000)
  }

  const receive = async (onChunk: OnChunk): Promise<void> => {
    const hold = pauser(
      () => ws.pause(),
      () => ws.resume(),
      () => ws.terminate()
    )
    ws.on('message', (data) => {
      if (!(data instanceof Uint8Array)) throw new Error('expected a binary message as a Buffer')
      const p = onChunk(data)
      if (p !== undefined) hold(p)
    })
    await closed
  }

  return {
    send,
    receive,
    // One message per WebSocket message: ws already frames them, no length prefix needed.
    sendMessages: send,
    receiveMessages: receive,
    async echo() {
      await receive((chunk) => write(chunk))
    }
  }
}

/**
 * A `ws` client and server with these options on both sides, each socket made a `Conn` by
 * `toConn`: `ws-nosync.ts` reuses it with `allowSynchronousEvents: false`, `cws.ts` with
 * `createWebSocketStream()`.
 */
export function wsImpl(
  description: string,
  options: { allowSynchronousEvents?: boolean },
  toConn: (ws: WebSocket) => Conn = wsConn
): Impl {
  return {
    description,
    async listen(onConnection) {
      const wss = new WebSocketServer({
        host: '127.0.0.1',
        port: 0,
        perMessageDeflate: false,
        ...options
      })
      wss.on('connection', (ws) => onConnection(toConn(ws)))
      await once(wss, 'listening')
      return {
        port: tcpPort(wss.address()),
        close: () => new Promise<void>((resolve) => wss.close(() => resolve()))
      }
    },
    async connect(port) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, ...options })
      await once(ws, 'open')
      return toConn(ws)
    }
  }
}

export default wsImpl(
  'ws used directly: send() + bufferedAmount window, pause()/resume() reader',
  {}
)
