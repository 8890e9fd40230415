/** ws-duplex through its Node Duplex face (write()/'drain', 'data'/pause()/resume()). */
import { duplexConn, tcpPort } from '../adapters.js'
import type { Impl } from '../types.js'
import { loadWsDuplex } from '../wsd.js'

const impl: Impl = {
  description: 'ws-duplex (built dist/), Duplex face',
  async listen(onConnection) {
    const { createServer } = await loadWsDuplex()
    const server = await createServer({ port: 0, host: '127.0.0.1' }, (d) =>
      onConnection(duplexConn(d))
    )
    return {
      port: tcpPort(server.address()),
      close: () => server.close()
    }
  },
  async connect(port) {
    const { connect } = await loadWsDuplex()
    return duplexConn(await connect(`ws://127.0.0.1:${port}`))
  }
}

export default impl
