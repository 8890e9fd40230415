/** Close codes and reasons: what may be sent, and what counts as a clean ending (RFC 6455 §7.4). */

export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Reserved: "no status received". Never sent on the wire (§7.4.1). */
  NoStatus: 1005,
  /** Reserved: "abnormal closure", the connection ended without a close frame. Never sent. */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011
} as const

/** RFC 6455 §5.5.1: a control frame payload is at most 125 bytes, 2 of them the code. */
export const MAX_CLOSE_REASON_BYTES = 123

const utf8 = new TextEncoder()

/**
 * Codes an endpoint may put in a close frame. 1004, 1005, 1006 and 1015 are reserved and must
 * not be sent (§7.4.1); 1012-1014 are registered with IANA; 3000-4999 belong to libraries and
 * applications (§7.4.2). `ws.close()` throws on the others after switching to CLOSING, which
 * would leave a zombie socket, so we check first.
 */
export function isSendableCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) ||
      (code >= 1007 && code <= 1014) ||
      (code >= 3000 && code <= 4999))
  )
}

/** A peer's close with one of these codes is an orderly end of the byte stream. */
export function isCleanCloseCode(code: number): boolean {
  return code === CloseCode.Normal || code === CloseCode.GoingAway || code === CloseCode.NoStatus
}

/** Validates what `close(code, reason)` was given; throws TypeError/RangeError naming the argument. */
export function assertCloseArguments(code: unknown, reason: unknown): void {
  if (typeof code !== 'number') {
    throw new TypeError(
      `Expected \`code\` to be a number, got \`${String(code)}\` (${typeof code})`
    )
  }
  if (!isSendableCloseCode(code)) {
    throw new RangeError(
      `Expected \`code\` to be 1000-1003, 1007-1014 or 3000-4999, got \`${code}\``
    )
  }
  if (typeof reason !== 'string') {
    throw new TypeError(
      `Expected \`reason\` to be a string, got \`${String(reason)}\` (${typeof reason})`
    )
  }
  const bytes = utf8.encode(reason).length
  if (bytes > MAX_CLOSE_REASON_BYTES) {
    throw new RangeError(
      `Expected \`reason\` to be at most ${MAX_CLOSE_REASON_BYTES} bytes of UTF-8, got ${bytes}`
    )
  }
}
