import type { AddressInfo } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { WebSocket, WebSocketServer, type ServerOptions } from 'ws'
import { WsDuplex, type WsDuplexOptions } from '../../lib/index.js'
import { Opcode, startRawServer, type RawPeer, type RawServer } from './raw-peer.js'
import { onceWithin } from './wait.js'

/** Every resource a test opens, closed in afterEach, so one failing test cannot leak into the next. */
export class Cleanup {
  #tasks: (() => Promise<void> | void)[] = []

  add(task: () => Promise<void> | void): void {
    this.#tasks.push(task)
  }

  async run(): Promise<void> {
    const tasks = this.#tasks.splice(0).reverse()
    for (const task of tasks) await task()
  }
}

/** A plain `ws` server on 127.0.0.1, port 0; `connections` yields each server-side socket. */
export async function startWsServer(
  cleanup: Cleanup,
  options: ServerOptions = {}
): Promise<{ url: string; wss: WebSocketServer; nextSocket(ms?: number): Promise<WebSocket> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options })
  await onceWithin(wss, 'listening')
  const waiting: WebSocket[] = []
  const waiters: ((ws: WebSocket) => void)[] = []
  wss.on('connection', (ws) => {
    ws.on('error', () => {})
    const waiter = waiters.shift()
    if (waiter) waiter(ws)
    else waiting.push(ws)
  })
  cleanup.add(
    () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate()
        wss.close(() => resolve())
      })
  )
  const { port } = wss.address() as AddressInfo
  return {
    url: `ws://127.0.0.1:${port}`,
    wss,
    nextSocket(ms = 2000) {
      const ready = waiting.shift()
      if (ready) return Promise.resolve(ready)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no connection within ' + ms + ' ms')), ms)
        waiters.push((ws) => {
          clearTimeout(timer)
          resolve(ws)
        })
      })
    }
  }
}

/** A WsDuplex client over a raw `ws` client socket, opened, and destroyed in cleanup. */
export async function openDuplex(
  cleanup: Cleanup,
  url: string,
  options?: WsDuplexOptions,
  wsOptions?: ConstructorParameters<typeof WebSocket>[2]
): Promise<WsDuplex> {
  const ws = new WebSocket(url, wsOptions)
  await onceWithin(ws, 'open')
  const duplex = new WsDuplex(ws, options)
  cleanup.add(() => {
    duplex.destroy()
  })
  return duplex
}

/** Resolves with the error the stream fails with; rejects if it ends cleanly instead. */
export function streamError(
  stream: NodeJS.EventEmitter,
  ms = 3000
): Promise<Error & { code?: string; closeCode?: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done()
      reject(new Error(`no 'error' within ${ms} ms`))
    }, ms)
    const onError = (error: Error): void => {
      done()
      resolve(error)
    }
    const onEnd = (): void => {
      done()
      reject(new Error("the stream ended cleanly ('end') instead of failing"))
    }
    const done = (): void => {
      clearTimeout(timer)
      stream.off('error', onError)
      stream.off('end', onEnd)
    }
    stream.on('error', onError)
    stream.on('end', onEnd)
  })
}

/** Deterministic bytes, so a mismatch shows where it starts. */
export function patternBytes(length: number, seed = 0): Buffer {
  const bytes = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff
  return bytes
}

/** A raw `net` peer server, a WsDuplex client connected to it, and the server's side of it. */
export async function openRawPair(
  cleanup: Cleanup,
  options?: WsDuplexOptions
): Promise<{ duplex: WsDuplex; peer: RawPeer; raw: RawServer }> {
  const raw = await startRawServer()
  cleanup.add(() => raw.close())
  const duplex = await openDuplex(cleanup, raw.url, options)
  const peer = await raw.nextPeer()
  return { duplex, peer, raw }
}

/**
 * Ends `duplex` and has `peer` answer its close frame 100 ms later (slower than a timer that
 * overflowed to 1 ms); resolves with the close info and the names of process warnings meanwhile.
 */
export async function closeAnsweredSlowly(
  duplex: WsDuplex,
  peer: RawPeer
): Promise<{ closeInfo: WsDuplex['closeInfo']; warnings: string[]; firstFrame: number }> {
  const warnings: string[] = []
  const onWarning = (warning: Error): number => warnings.push(warning.name)
  process.on('warning', onWarning)
  try {
    duplex.resume()
    const closed = onceWithin(duplex, 'close', 3000)
    duplex.end()
    const firstFrame = (await peer.nextFrame()).opcode
    if (firstFrame === Opcode.Close) {
      await delay(100)
      peer.sendClose(1000)
    }
    await closed
    return { closeInfo: duplex.closeInfo, warnings, firstFrame }
  } finally {
    process.off('warning', onWarning)
  }
}
