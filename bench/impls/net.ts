/** Raw TCP through node:net: the machine's byte-stream limit, no WebSocket framing at all. */
import net from 'node:net'
import { once } from 'node:events'
import { duplexConn, tcpPort } from '../adapters.js'
import type { Impl } from '../types.js'

const impl: Impl = {
  description: 'node:net sockets (no WebSocket): the byte-stream ceiling',
  async listen(onConnection) {
    // ws sets TCP_NODELAY on its sockets; do the same here so rtt compares like with like.
    const server = net.createServer({ noDelay: true }, (socket) => onConnection(duplexConn(socket)))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return {
      port: tcpPort(server.address()),
      close: () => new Promise<void>((resolve) => server.close(() => resolve()))
    }
  },
  async connect(port) {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    await once(socket, 'connect')
    return duplexConn(socket)
  }
}

export default impl
