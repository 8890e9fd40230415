/** websocket-stream 5 (duplexify over its own bundled ws 3): the old Duplex-over-WebSocket. */
import { createServer as createHttpServer } from 'node:http'
import { once } from 'node:events'
import websocketStream from 'websocket-stream'
import { duplexConn, tcpPort } from '../adapters.js'
import type { Impl } from '../types.js'

const impl: Impl = {
  description: 'websocket-stream 5 (bundles ws 3)',
  async listen(onConnection) {
    // Its bundled ws 3 server has no address(): hand it an http server bound to loopback.
    const http = createHttpServer()
    const wss = websocketStream.createServer({ server: http, perMessageDeflate: false })
    // (its typings call the createServer callback without arguments; 'stream' is the real event)
    wss.on('stream', (stream) => onConnection(duplexConn(stream)))
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    return {
      port: tcpPort(http.address()),
      close: () =>
        new Promise<void>((resolve) => {
          wss.close()
          http.close(() => resolve())
        })
    }
  },
  async connect(port) {
    const stream = websocketStream(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    await once(stream, 'connect')
    return duplexConn(stream)
  }
}

export default impl
