import { expect } from 'chai'
import {
  assertCloseArguments,
  CloseCode,
  isCleanCloseCode,
  isSendableCloseCode,
  MAX_CLOSE_REASON_BYTES
} from '../lib/close-codes.js'
import { DEFAULTS, normalizeOptions, type WsDuplexOptions } from '../lib/options.js'

/** What normalizeOptions() throws for `options`; fails the test if it does not throw. */
function thrownBy(options: unknown): Error {
  try {
    normalizeOptions(options)
  } catch (error) {
    return error as Error
  }
  throw new Error(`normalizeOptions(${JSON.stringify(options)}) did not throw`)
}

const escape = (name: string): string => name.replace(/\./g, '\\.')

describe('normalizeOptions', () => {
  describe('defaults', () => {
    it('fills every option when none is given', () => {
      expect(normalizeOptions(undefined)).to.deep.equal({
        text: 'error',
        maxFrameSize: 65536,
        closeTimeout: 5000,
        keepAlive: undefined,
        readableHighWaterMark: 65536,
        writableHighWaterMark: 262144,
        maxReadBuffer: 8 * 1024 * 1024
      })
    })

    it('treats an empty object like no options', () => {
      expect(normalizeOptions({})).to.deep.equal(normalizeOptions(undefined))
    })

    it('keeps the values given', () => {
      const given: WsDuplexOptions = {
        text: 'bytes',
        maxFrameSize: 1,
        closeTimeout: 2 ** 31 - 1,
        readableHighWaterMark: 2 ** 30,
        writableHighWaterMark: 1,
        maxReadBuffer: 1
      }
      expect(normalizeOptions(given)).to.deep.equal({ ...given, keepAlive: undefined })
    })

    it('matches the exported DEFAULTS', () => {
      const normalized = normalizeOptions({ keepAlive: true })
      expect(normalized.text).to.equal(DEFAULTS.text)
      expect(normalized.maxFrameSize).to.equal(DEFAULTS.maxFrameSize)
      expect(normalized.closeTimeout).to.equal(DEFAULTS.closeTimeout)
      expect(normalized.keepAlive).to.deep.equal({
        interval: DEFAULTS.keepAliveInterval,
        timeout: DEFAULTS.keepAliveTimeout
      })
      expect(DEFAULTS.maxPayload).to.equal(1024 * 1024)
    })
  })

  describe('option text', () => {
    for (const text of ['error', 'ignore', 'bytes'] as const) {
      it(`accepts '${text}'`, () => {
        expect(normalizeOptions({ text }).text).to.equal(text)
      })
    }
  })

  describe('option keepAlive', () => {
    it('is off for false', () => {
      expect(normalizeOptions({ keepAlive: false }).keepAlive).to.equal(undefined)
    })

    it('uses an interval of 30000 and a timeout of 10000 for true', () => {
      expect(normalizeOptions({ keepAlive: true }).keepAlive).to.deep.equal({
        interval: 30000,
        timeout: 10000
      })
    })

    it('fills the missing half of a partial object', () => {
      expect(normalizeOptions({ keepAlive: { interval: 1000 } }).keepAlive).to.deep.equal({
        interval: 1000,
        timeout: 10000
      })
      expect(normalizeOptions({ keepAlive: { timeout: 500 } }).keepAlive).to.deep.equal({
        interval: 30000,
        timeout: 500
      })
      expect(normalizeOptions({ keepAlive: {} }).keepAlive).to.deep.equal({
        interval: 30000,
        timeout: 10000
      })
    })

    it('rejects a key it does not know (a misspelt interval) with a TypeError naming it', () => {
      for (const key of ['intervall', 'Interval', 'timeOut']) {
        expect(() => normalizeOptions({ keepAlive: { [key]: 5000 } }), key)
          .to.throw(TypeError)
          .with.property('message')
          .that.includes(`\`keepAlive.${key}\``)
      }
      // As for the top-level options, a key given as undefined is no mistake.
      expect(normalizeOptions({ keepAlive: { extra: undefined } }).keepAlive).to.deep.equal({
        interval: 30000,
        timeout: 10000
      })
    })

    it('returns a new frozen object, leaving the one given untouched', () => {
      const keepAlive = { interval: 1000 }
      const normalized = normalizeOptions({ keepAlive }).keepAlive
      expect(normalized).to.not.equal(keepAlive)
      expect(Object.isFrozen(normalized)).to.equal(true)
      expect(keepAlive).to.deep.equal({ interval: 1000 })
      expect(Object.isFrozen(keepAlive)).to.equal(false)
    })
  })

  describe('result', () => {
    it('is a new frozen object, and the input is untouched', () => {
      const input: WsDuplexOptions = { maxFrameSize: 1024, keepAlive: { timeout: 100 } }
      const before = structuredClone(input)
      const normalized = normalizeOptions(input)
      expect(normalized).to.not.equal(input)
      expect(Object.isFrozen(normalized)).to.equal(true)
      expect(input).to.deep.equal(before)
      expect(Object.isFrozen(input)).to.equal(false)
      expect(Object.keys(input)).to.deep.equal(['maxFrameSize', 'keepAlive'])
    })

    it('is one shared frozen object for every caller that sets nothing', () => {
      // Memory per idle connection: a server or client taking the defaults holds no copy.
      const shared = normalizeOptions(undefined)
      expect(Object.isFrozen(shared)).to.equal(true)
      expect(normalizeOptions({})).to.equal(shared)
      expect(normalizeOptions({ host: 'x', text: undefined })).to.equal(shared)
      expect(normalizeOptions({ text: 'error' })).to.not.equal(shared)
    })

    it('ignores names it does not know', () => {
      const normalized = normalizeOptions({ host: 'x', port: 1 })
      expect(normalized).to.deep.equal(normalizeOptions(undefined))
    })
  })

  describe('bad values', () => {
    const cases: [name: string, options: unknown, type: typeof TypeError | typeof RangeError][] = [
      ['options', null, TypeError],
      ['options', 'text', TypeError],
      ['options', [], TypeError],
      ['text', 'binary', TypeError],
      ['text', 1, TypeError],
      ['text', null, TypeError],
      ['maxFrameSize', 'x', TypeError],
      ['maxFrameSize', 1.5, TypeError],
      ['maxFrameSize', NaN, TypeError],
      ['maxFrameSize', Infinity, TypeError],
      ['maxFrameSize', null, TypeError],
      ['maxFrameSize', 0, RangeError],
      ['maxFrameSize', -1, RangeError],
      ['maxFrameSize', 2 ** 30 + 1, RangeError],
      ['closeTimeout', '5000', TypeError],
      ['closeTimeout', 0, RangeError],
      ['closeTimeout', 2 ** 31, RangeError],
      ['readableHighWaterMark', 0, RangeError],
      ['readableHighWaterMark', 1.5, TypeError],
      ['writableHighWaterMark', -1, RangeError],
      ['writableHighWaterMark', '1', TypeError],
      ['maxReadBuffer', 0, RangeError],
      ['maxReadBuffer', 2 ** 31 + 1, RangeError],
      ['maxReadBuffer', 1.5, TypeError],
      ['keepAlive', 'yes', TypeError],
      ['keepAlive', null, TypeError],
      ['keepAlive', [], TypeError],
      ['keepAlive', 1, TypeError],
      ['keepAlive.interval', { interval: 0 }, RangeError],
      ['keepAlive.interval', { interval: '1' }, TypeError],
      ['keepAlive.timeout', { timeout: 2 ** 31 }, RangeError],
      ['keepAlive.timeout', { timeout: 1.5 }, TypeError]
    ]
    for (const [name, value, type] of cases) {
      const options =
        name === 'options'
          ? value
          : name.startsWith('keepAlive.')
            ? { keepAlive: value }
            : { [name]: value }
      const shown = typeof value === 'number' ? String(value) : JSON.stringify(value)
      it(`throws a ${type.name} naming \`${name}\` for ${shown}`, () => {
        const error = thrownBy(options)
        expect(error).to.be.instanceOf(type)
        expect(error.message).to.match(new RegExp(`^Expected \`${escape(name)}\``))
      })
    }
  })
})

describe('close codes', () => {
  describe('isSendableCloseCode', () => {
    const sendable = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
    const reserved = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
    for (const code of [...sendable, 3000, 3500, 4000, 4999]) {
      it(`is true for ${code}`, () => {
        expect(isSendableCloseCode(code)).to.equal(true)
      })
    }
    for (const code of [...reserved, 1000.5, NaN, -1000]) {
      it(`is false for ${code}`, () => {
        expect(isSendableCloseCode(code)).to.equal(false)
      })
    }
  })

  describe('isCleanCloseCode', () => {
    it('is true only for 1000, 1001 and 1005', () => {
      const clean = [999, 1000, 1001, 1002, 1003, 1005, 1006, 1011, 4000].filter(isCleanCloseCode)
      expect(clean).to.deep.equal([1000, 1001, 1005])
    })
  })

  describe('CloseCode', () => {
    it('names the RFC 6455 codes', () => {
      expect(CloseCode).to.deep.equal({
        Normal: 1000,
        GoingAway: 1001,
        ProtocolError: 1002,
        UnsupportedData: 1003,
        NoStatus: 1005,
        Abnormal: 1006,
        InvalidPayload: 1007,
        PolicyViolation: 1008,
        MessageTooBig: 1009,
        InternalError: 1011
      })
    })
  })

  describe('assertCloseArguments', () => {
    it('accepts a sendable code with a reason of up to 123 bytes of UTF-8', () => {
      expect(MAX_CLOSE_REASON_BYTES).to.equal(123)
      expect(() => assertCloseArguments(1000, '')).to.not.throw()
      expect(() => assertCloseArguments(4999, 'x'.repeat(123))).to.not.throw()
      expect(() => assertCloseArguments(3000, 'é'.repeat(61) + 'x')).to.not.throw()
    })

    it('throws a TypeError naming `code` for a code that is not a number', () => {
      expect(() => assertCloseArguments('1000', '')).to.throw(TypeError, /`code`/)
      expect(() => assertCloseArguments(undefined, '')).to.throw(TypeError, /`code`/)
    })

    it('throws a RangeError naming `code` for a code that may not be sent', () => {
      for (const code of [999, 1004, 1005, 1006, 1015, 2999, 5000, 1000.5]) {
        expect(() => assertCloseArguments(code, ''), String(code)).to.throw(RangeError, /`code`/)
      }
    })

    it('throws a TypeError naming `reason` for a reason that is not a string', () => {
      expect(() => assertCloseArguments(1000, 5)).to.throw(TypeError, /`reason`/)
      expect(() => assertCloseArguments(1000, undefined)).to.throw(TypeError, /`reason`/)
    })

    it('throws a RangeError naming `reason` for a reason over 123 bytes of UTF-8', () => {
      expect(() => assertCloseArguments(1000, 'x'.repeat(124))).to.throw(RangeError, /`reason`/)
      // 62 two-byte characters: 62 characters, 124 bytes.
      expect(() => assertCloseArguments(1000, 'é'.repeat(62))).to.throw(RangeError, /`reason`/)
    })
  })
})
