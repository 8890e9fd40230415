/** ws-duplex: a WebSocket as a byte stream. This module only re-exports the public surface. */
export { WsDuplex, type ChunkIterator, type CloseResult } from './duplex.js'
export { connect, type ConnectOptions } from './client.js'
export { fromWebSocket } from './from-web-socket.js'
export { WsStream, type WsStreamOptions } from './stream.js'
export type { WhatwgWebSocket, WhatwgListener } from './whatwg-socket.js'
export {
  createServer,
  WsDuplexServer,
  type ServerOptions,
  type VerifyClientInfo,
  type VerifyClientResult,
  type WsDuplexServerEvents
} from './server.js'
export { WsDuplexError, type WsDuplexErrorCode, type WsDuplexErrorDetails } from './errors.js'
export { StreamEvents, type WsDuplexEvents, type ClosingInfo, type CloseInfo } from './events.js'
export type { DuplexEvents } from './duplex-events.js'
export type { WsDuplexOptions, KeepAliveOptions, TextPolicy } from './options.js'
export type { SinkChunk } from './iterable.js'
export { CloseCode, isSendableCloseCode } from './close-codes.js'
