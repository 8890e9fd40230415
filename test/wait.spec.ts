import { expect } from 'chai'
import { EventEmitter } from 'node:events'
import { PassThrough, Readable } from 'node:stream'
import { collect, onceWithin, withTimeout } from './helpers/wait.js'

async function rejectionOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection')
}

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
}

describe('wait helpers', () => {
  describe('withTimeout()', () => {
    it('resolves with the value and clears its timer', async () => {
      await Promise.resolve() // let mocha arm its own timer before counting
      const before = timers()
      expect(await withTimeout(Promise.resolve(42), 1000, 'the answer')).to.equal(42)
      expect(timers()).to.equal(before)
    })

    it('passes a rejection through and clears its timer', async () => {
      await Promise.resolve()
      const before = timers()
      const err = await rejectionOf(withTimeout(Promise.reject(new Error('boom')), 1000, 'x'))
      expect(err.message).to.equal('boom')
      expect(timers()).to.equal(before)
    })

    it('rejects with a message naming what it waited for', async () => {
      const err = await rejectionOf(withTimeout(new Promise(() => undefined), 20, 'the moon'))
      expect(err.message).to.equal('timed out after 20 ms waiting for the moon')
    })
  })

  describe('onceWithin()', () => {
    it('resolves with the event arguments and removes its listeners', async () => {
      const emitter = new EventEmitter()
      const fired = onceWithin<[number, string]>(emitter, 'ready')
      emitter.emit('ready', 1, 'two')
      expect(await fired).to.deep.equal([1, 'two'])
      expect(emitter.listenerCount('ready') + emitter.listenerCount('error')).to.equal(0)
    })

    it("rejects on 'error' like events.once", async () => {
      const emitter = new EventEmitter()
      const fired = onceWithin(emitter, 'ready')
      emitter.emit('error', new Error('broken'))
      expect((await rejectionOf(fired)).message).to.equal('broken')
      expect(emitter.listenerCount('ready') + emitter.listenerCount('error')).to.equal(0)
    })

    it("resolves when waiting for 'error' itself", async () => {
      const emitter = new EventEmitter()
      const fired = onceWithin<[Error]>(emitter, 'error')
      emitter.emit('error', new Error('expected'))
      expect((await fired)[0].message).to.equal('expected')
    })

    it('rejects after the bound and removes its listeners', async () => {
      const emitter = new EventEmitter()
      const err = await rejectionOf(onceWithin(emitter, 'never', 20))
      expect(err.message).to.equal("timed out after 20 ms waiting for 'never'")
      expect(emitter.listenerCount('never') + emitter.listenerCount('error')).to.equal(0)
    })
  })

  describe('collect()', () => {
    it('concatenates every chunk', async () => {
      const chunks = [Buffer.from('ab'), new Uint8Array([0x63]), Buffer.alloc(0), Buffer.from('d')]
      expect(await collect(Readable.from(chunks))).to.deep.equal(Buffer.from('abcd'))
    })

    it('rejects when the stream does not end in time, and releases the stream', async () => {
      const stream = new PassThrough()
      stream.write(Buffer.from('partial'))
      const err = await rejectionOf(collect(stream, 20))
      expect(err.message).to.equal('timed out after 20 ms waiting for the end of the stream')
      await onceWithin(stream, 'close')
      expect(stream.destroyed).to.equal(true)
    })

    it('passes a stream error through', async () => {
      const stream = new PassThrough()
      const collected = collect(stream)
      stream.destroy(new Error('torn'))
      expect((await rejectionOf(collected)).message).to.equal('torn')
    })
  })
})
