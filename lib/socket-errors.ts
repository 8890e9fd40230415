/**
 * Turns what `ws` reports (an Error whose `code` is a WS_ERR_* string, or a network error) into
 * a WsDuplexError with one of our codes and the close code that went on the wire.
 */
import { CloseCode } from './close-codes.js'
import { WsDuplexError } from './errors.js'

/** ws's receiver errors and the close code ws sends for each (RFC 6455 §7.4.1). */
const closeCodeOfWsError: Readonly<Record<string, number>> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_INVALID_UTF8: CloseCode.InvalidPayload
}

function errorCode(error: Error | undefined): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

/**
 * @param opened whether the opening handshake had completed; before it, every failure is a
 *   connect failure.
 */
export function errorFromSocket(
  error: Error | undefined,
  rejectedStatus: number | undefined,
  opened: boolean
): WsDuplexError {
  const code = errorCode(error)
  if (!opened) {
    if (rejectedStatus !== undefined) {
      return new WsDuplexError(
        'ERR_HANDSHAKE_REJECTED',
        `The server refused the WebSocket upgrade with HTTP ${rejectedStatus}`,
        { status: rejectedStatus, cause: error }
      )
    }
    // ws's own handshakeTimeout reports itself with this message and no code.
    if (error?.message === 'Opening handshake has timed out') {
      return new WsDuplexError('ERR_CONNECT_TIMEOUT', 'The opening handshake timed out', {
        cause: error
      })
    }
    const reason = code ?? error?.message ?? 'the connection closed before the handshake'
    return new WsDuplexError('ERR_CONNECT_FAILED', `Could not open the WebSocket: ${reason}`, {
      cause: error
    })
  }
  if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
    return new WsDuplexError('ERR_PAYLOAD_TOO_LARGE', 'An incoming message exceeded maxPayload', {
      closeCode: CloseCode.MessageTooBig,
      cause: error
    })
  }
  if (code !== undefined && code.startsWith('WS_ERR_')) {
    // ws closes with 1002 for every other protocol violation it detects.
    const closeCode = closeCodeOfWsError[code] ?? CloseCode.ProtocolError
    return new WsDuplexError('ERR_PROTOCOL', `The peer broke RFC 6455 (${code})`, {
      closeCode,
      cause: error
    })
  }
  return new WsDuplexError('ERR_ABNORMAL_CLOSURE', 'The connection failed', {
    closeCode: CloseCode.Abnormal,
    cause: error
  })
}
