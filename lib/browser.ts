/**
 * ws-duplex for browsers (the `browser` export condition) and for any runtime with a WHATWG
 * WebSocket (`ws-duplex/browser`): the source/sink face over a WHATWG WebSocket. Imports
 * neither `ws` nor `node:` modules, so it bundles without shims.
 */
export { WsStream, type WsStreamOptions } from './stream.js'
export {
  connect,
  type WhatwgConnectOptions as ConnectOptions,
  type WhatwgWebSocketClass
} from './whatwg-client.js'
export { fromWhatwgWebSocket as fromWebSocket } from './stream.js'
export type { WhatwgWebSocket, WhatwgListener } from './whatwg-socket.js'
export { WsDuplexError, type WsDuplexErrorCode, type WsDuplexErrorDetails } from './errors.js'
export { StreamEvents, type WsDuplexEvents, type ClosingInfo, type CloseInfo } from './events.js'
export type { WsDuplexOptions, KeepAliveOptions, TextPolicy } from './options.js'
export type { SinkChunk } from './iterable.js'
export { CloseCode, isSendableCloseCode } from './close-codes.js'
