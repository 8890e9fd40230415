/** ws's own `createWebSocketStream()`: a Node Duplex over one WebSocket, one message per write. */
import { once } from 'node:events'
import { WebSocket, WebSocketServer, createWebSocketStream } from 'ws'
import { duplexConn } from '../adapters.js'
import type { Impl } from '../types.js'

const impl: Impl = {
  description: "ws's createWebSocketStream() Duplex",
  async listen(onConnection) {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
    wss.on('connection', (ws) => onConnection(duplexConn(createWebSocketStream(ws))))
    await once(wss, 'listening')
    const address = wss.address()
    if (address === null || typeof address === 'string') throw new Error('no TCP address')
    return {
      port: address.port,
      close: () => new Promise<void>((resolve) => wss.close(() => resolve()))
    }
  },
  async connect(port) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    await once(ws, 'open')
    return duplexConn(createWebSocketStream(ws))
  }
}

export default impl
