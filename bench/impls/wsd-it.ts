/** ws-duplex through its it-stream-types face (`sink(source)`, `for await (… of source)`). */
import { itConn, tcpPort } from '../adapters.js'
import type { Impl } from '../types.js'
import { loadWsDuplex } from '../wsd.js'

const impl: Impl = {
  description: 'ws-duplex (built dist/), source/sink face',
  async listen(onConnection) {
    const { createServer } = await loadWsDuplex()
    const server = await createServer({ port: 0, host: '127.0.0.1' }, (d) =>
      onConnection(itConn(d))
    )
    return {
      port: tcpPort(server.address()),
      close: () => server.close()
    }
  },
  async connect(port) {
    const { connect } = await loadWsDuplex()
    return itConn(await connect(`ws://127.0.0.1:${port}`))
  }
}

export default impl
