/** it-ws 6, client and server: the it-stream-types duplex libp2p has used over ws. */
import { createServer as createHttpServer } from 'node:http'
import { once } from 'node:events'
import { connect, createServer } from 'it-ws'
import { itConn, tcpPort } from '../adapters.js'
import type { Impl } from '../types.js'

const impl: Impl = {
  description: 'it-ws 6 connect() + createServer(): source/sink',
  async listen(onConnection) {
    // it-ws's own listen() binds every interface; give it an http server bound to loopback.
    const http = createHttpServer()
    const server = createServer({ server: http, onConnection: (d) => onConnection(itConn(d)) })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    return {
      port: tcpPort(http.address()),
      close: () => server.close()
    }
  },
  async connect(port) {
    const d = connect(`ws://127.0.0.1:${port}`, { websocket: { perMessageDeflate: false } })
    await d.connected()
    return itConn(d)
  }
}

export default impl
