/** fromWebSocket(): one entry point for either kind of WebSocket a Node program may hold. */
import { WebSocket } from 'ws'
import { WsDuplex } from './duplex.js'
import type { WsDuplexOptions } from './options.js'
import { WsStream, type WsStreamOptions } from './stream.js'
import { isWhatwgWebSocket, type WhatwgWebSocket } from './whatwg-socket.js'

/**
 * Wraps a `ws` WebSocket as a WsDuplex (Duplex and source/sink), or a WHATWG WebSocket (Node's
 * global one, undici's) as a WsStream (source/sink). Either must be CONNECTING or OPEN.
 */
export function fromWebSocket(socket: WebSocket, options?: WsDuplexOptions): WsDuplex
export function fromWebSocket(socket: WhatwgWebSocket, options?: WsStreamOptions): WsStream
export function fromWebSocket(
  socket: WebSocket | WhatwgWebSocket,
  options?: WsStreamOptions
): WsDuplex | WsStream {
  if (socket instanceof WebSocket) return new WsDuplex(socket, options)
  if (isWhatwgWebSocket(socket)) return new WsStream(socket, options)
  throw new TypeError(`Expected \`socket\` to be a ws or WHATWG WebSocket, got ${typeof socket}`)
}
