/**
 * Turns what `ws` reports (an Error whose `code` is a WS_ERR_* string, or a network error) into
 * a WsDuplexError with one of our codes and the close code that went on the wire.
 */
import { CloseCode } from './close-codes.js'
import { WsDuplexError } from './errors.js'

/** ws's receiver errors and the close code ws sends for each (RFC 6455 §7.4.1), ws 8.23. */
const closeCodeOfWsError: Readonly<Record<string, number>> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: CloseCode.PolicyViolation,
  WS_ERR_INVALID_UTF8: CloseCode.InvalidPayload
}

/** Messages too large to accept, by declared length or by what actually arrived. */
const tooLarge = new Set([
  'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH',
  'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH'
])

function errorCode(error: Error | undefined): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

/**
 * The close code ws sent for this error, if it says. ws tags its errors with it under an
 * unexported symbol: its receiver's WS_ERR_* errors, and zlib's errors from permessage-deflate
 * (1007 for a message that does not inflate), which carry zlib's own `code`.
 */
function taggedCloseCode(error: Error): number | undefined {
  const tag = Object.getOwnPropertySymbols(error).find((s) => s.description === 'status-code')
  const tagged = tag === undefined ? undefined : (error as unknown as Record<symbol, unknown>)[tag]
  return typeof tagged === 'number' ? tagged : undefined
}

/**
 * @param opened whether the opening handshake had completed; before it, every failure is a
 *   connect failure.
 * @param closeCodeSent the code of the close frame already on the wire, if one is.
 */
export function errorFromSocket(
  error: Error | undefined,
  rejectedStatus: number | undefined,
  opened: boolean,
  closeCodeSent?: number
): WsDuplexError {
  // A seam that already knows what happened (the WHATWG one) reports it as it is.
  if (error instanceof WsDuplexError) return error
  const code = errorCode(error)
  if (!opened) {
    if (rejectedStatus !== undefined) {
      // The status says it all: ws's own error here ("closed before the connection was
      // established") would only mislead.
      return new WsDuplexError(
        'ERR_HANDSHAKE_REJECTED',
        `The server refused the WebSocket upgrade with HTTP ${rejectedStatus}`,
        { status: rejectedStatus }
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
  const tagged = error === undefined ? undefined : taggedCloseCode(error)
  if (error !== undefined && (tagged !== undefined || code?.startsWith('WS_ERR_') === true)) {
    // The tag keeps us right if ws changes a code; the table covers its absence.
    // A side sends one close frame (RFC 6455 §5.5.1): found after ours went out, the failure
    // carries the code that did, not the one ws would have sent.
    const closeCode =
      closeCodeSent ??
      tagged ??
      (code === undefined ? undefined : closeCodeOfWsError[code]) ??
      CloseCode.ProtocolError
    if (code !== undefined && tooLarge.has(code)) {
      return new WsDuplexError('ERR_PAYLOAD_TOO_LARGE', 'An incoming message exceeded maxPayload', {
        closeCode,
        cause: error
      })
    }
    const what = code ?? error.message
    return new WsDuplexError('ERR_PROTOCOL', `The peer broke RFC 6455 or a limit (${what})`, {
      closeCode,
      cause: error
    })
  }
  return new WsDuplexError('ERR_ABNORMAL_CLOSURE', 'The connection failed', {
    closeCode: CloseCode.Abnormal,
    cause: error
  })
}
