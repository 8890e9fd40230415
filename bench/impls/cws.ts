/** ws's own `createWebSocketStream()`: a Node Duplex over one WebSocket, one message per write. */
import { createWebSocketStream } from 'ws'
import { duplexConn } from '../adapters.js'
import { wsImpl } from './ws.js'

export default wsImpl("ws's createWebSocketStream() Duplex", {}, (ws) =>
  duplexConn(createWebSocketStream(ws))
)
