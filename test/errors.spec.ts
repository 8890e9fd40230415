import { expect } from 'chai'
import { toError, WsDuplexError } from '../lib/errors.js'
import { WsDuplexError as PublicWsDuplexError } from '../lib/index.js'

type ErrorsModule = typeof import('../lib/errors.js')

/**
 * A second, separately evaluated copy of lib/errors.ts, as when two versions of the package are
 * installed: the query string makes the loader treat it as another module.
 */
async function secondCopy(): Promise<ErrorsModule> {
  const specifier = new URL('../lib/errors.js?second-copy', import.meta.url).href
  return (await import(specifier)) as ErrorsModule
}

describe('WsDuplexError', () => {
  describe('constructor', () => {
    it('sets name, code, message, closeCode, status and cause', () => {
      const cause = new Error('underlying')
      const error = new WsDuplexError('ERR_HANDSHAKE_REJECTED', 'refused', {
        closeCode: 1006,
        status: 403,
        cause
      })
      expect(error).to.be.instanceOf(Error)
      expect(error.name).to.equal('WsDuplexError')
      expect(error.code).to.equal('ERR_HANDSHAKE_REJECTED')
      expect(error.message).to.equal('refused')
      expect(error.closeCode).to.equal(1006)
      expect(error.status).to.equal(403)
      expect(error.cause).to.equal(cause)
      expect(error.stack).to.be.a('string')
    })

    it('leaves closeCode, status and cause unset without details', () => {
      const error = new WsDuplexError('ERR_STREAM_CLOSED', 'closed')
      expect(error.closeCode).to.equal(undefined)
      expect(error.status).to.equal(undefined)
      expect(Object.hasOwn(error, 'cause')).to.equal(false)
    })

    it('keeps a falsy cause other than undefined', () => {
      const error = new WsDuplexError('ERR_ABORTED', 'aborted', { cause: 0 })
      expect(Object.hasOwn(error, 'cause')).to.equal(true)
      expect(error.cause).to.equal(0)
    })

    it('is the class exported by the package entry point', () => {
      expect(PublicWsDuplexError).to.equal(WsDuplexError)
    })
  })

  describe('instanceof', () => {
    it('holds for an error made by a second copy of the class, both ways', async () => {
      const copy = await secondCopy()
      expect(copy.WsDuplexError, 'a separate class').to.not.equal(WsDuplexError)
      const foreign = new copy.WsDuplexError('ERR_CONNECT_FAILED', 'refused')
      expect(foreign instanceof WsDuplexError).to.equal(true)
      expect(new WsDuplexError('ERR_ABORTED', 'aborted') instanceof copy.WsDuplexError).to.equal(
        true
      )
      expect(foreign.code).to.equal('ERR_CONNECT_FAILED')
    })

    it('holds for an object carrying the Symbol.for brand', () => {
      const branded = { [Symbol.for('ws-duplex.WsDuplexError')]: true }
      expect(branded instanceof WsDuplexError).to.equal(true)
    })

    it('does not hold for other errors and values', () => {
      for (const value of [
        new Error('x'),
        new TypeError('x'),
        Object.assign(new Error('x'), { code: 'ERR_ABORTED', name: 'WsDuplexError' }),
        { code: 'ERR_ABORTED' },
        null,
        undefined,
        'WsDuplexError'
      ]) {
        expect(value instanceof WsDuplexError, String(value)).to.equal(false)
      }
    })
  })
})

describe('toError', () => {
  it('passes an Error through', () => {
    const error = new RangeError('x')
    expect(toError(error)).to.equal(error)
  })

  it('wraps anything else in an Error', () => {
    const error = toError('boom')
    expect(error).to.be.instanceOf(Error)
    expect(error.message).to.equal('boom')
  })
})
