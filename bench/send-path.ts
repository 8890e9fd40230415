/**
 * What ws-duplex's own code costs per frame on the write path, without a socket: the sink's
 * drain loop, the send queue, backpressure and the send callbacks, over a stub seam whose
 * sends complete on the next turn of the event loop. The side-by-side bench (`run.ts`) measures
 * everything together; this isolates the part that is ours.
 *
 * The first 1,000 frames are reported apart: the process starts cold, and until V8 has
 * optimised the path every frame costs several times what it costs once warm. A 256 MiB
 * transfer is only 4,096 frames, so that is what sets its pace as much as the warm figure.
 *
 *   node --import tsx bench/send-path.ts [--frames=N]
 */
import { Connection, type ConnectionFace } from '../lib/connection.js'
import type { EventSink } from '../lib/events.js'
import { SinkRun, type ChunkWriter } from '../lib/iterable.js'
import { normalizeOptions } from '../lib/options.js'
import type { SendCallback, SocketHandler, SocketSeam, SocketState } from '../lib/seam.js'

const FRAME = 64 * 1024

class StubSeam implements SocketSeam<Connection> {
  readonly state: SocketState = 'open'
  readonly isPaused = false
  readonly canPause = true
  readonly canPing = true
  readonly sendsSurviveTerminate = true
  frames = 0
  /** Every frame stays in "user space" until its callback, as on a socket whose kernel is full. */
  unsentBytes = 0
  attach(_owner: Connection, _handler: SocketHandler<Connection>): void {}
  watchControlFrames(): void {}
  pause(): void {}
  resume(): void {}
  send(frame: Uint8Array, callback: SendCallback): void {
    this.frames++
    this.unsentBytes += frame.length
    setImmediate(() => {
      this.unsentBytes -= frame.length
      callback()
    })
  }
  ping(_data: Uint8Array, _callback: SendCallback): void {}
  wireCloseCode(code: number): number {
    return code
  }
  close(): void {}
  terminate(): void {}
}

const face: ConnectionFace = {
  makeEvents: (): EventSink => ({ emit: () => false }),
  deliver: () => true,
  unreadBytes: 0,
  writable: () => undefined,
  endWriting: () => undefined,
  connectionClosed: () => undefined,
  surfaceFatal: () => undefined,
  cleanEnd: () => undefined
}

async function measure(frames: number, writableHighWaterMark: number): Promise<void> {
  const seam = new StubSeam()
  const connection = new Connection(seam, face, normalizeOptions({ writableHighWaterMark }))
  const writer: ChunkWriter = {
    write: (chunk) => {
      connection.push(chunk)
      return connection.hasRoom
    },
    drained: () => connection.whenRoom(),
    finish: () => Promise.resolve(),
    abort: () => undefined
  }
  const chunk = new Uint8Array(FRAME)
  const cold = Math.min(COLD_FRAMES, frames)
  let coldCpuUs = 0
  const cpu = process.cpuUsage()
  const chunks = function* (): Generator<Uint8Array> {
    for (let i = 0; i < frames; i++) {
      // Frame `cold` is asked for once the first `cold` frames were written.
      if (i === cold) coldCpuUs = cpuUs(process.cpuUsage(cpu))
      yield chunk
    }
  }
  const start = process.hrtime.bigint()
  await new SinkRun(writer).run(chunks())
  const wallNs = Number(process.hrtime.bigint() - start)
  const usedUs = cpuUs(process.cpuUsage(cpu))
  if (seam.frames !== frames) throw new Error(`sent ${seam.frames} frames, expected ${frames}`)
  const rest = frames - cold
  const split =
    rest === 0 || !firstRun
      ? ''
      : `; first ${cold}: ${(coldCpuUs / cold).toFixed(2)} µs, ` +
        `the other ${rest}: ${((usedUs - coldCpuUs) / rest).toFixed(2)} µs`
  firstRun = false
  console.log(
    `writableHighWaterMark ${writableHighWaterMark / 1024} KiB: ` +
      `${(usedUs / frames).toFixed(2)} µs CPU, ` +
      `${(wallNs / frames / 1000).toFixed(2)} µs wall per ${FRAME / 1024} KiB frame ` +
      `(${frames} frames${split})`
  )
}

/** Frames counted as the cold start (only the process's first measurement starts cold). */
const COLD_FRAMES = 1000
let firstRun = true

function cpuUs(used: NodeJS.CpuUsage): number {
  return used.user + used.system
}

const framesArg = process.argv.find((a) => a.startsWith('--frames='))
const frames = framesArg === undefined ? 200_000 : Number(framesArg.slice('--frames='.length))
if (!Number.isInteger(frames) || frames < 1) throw new Error('--frames wants a positive integer')
// The default high water mark first: it is the one measured cold.
for (const hwm of [256 * 1024, 64 * 1024]) await measure(frames, hwm)
