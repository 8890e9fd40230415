/**
 * Sends a file over a WebSocket with stream.pipeline() and checks it arrived whole by SHA-256.
 * The receiver trusts the end of the stream only because ws-duplex ends it cleanly only after
 * a clean close handshake: a reset or a 1011 would fail the pipeline instead.
 * Run: npx tsx examples/file-transfer.ts [file]   (without a file, 32 MiB of random bytes)
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { connect, createServer, type WsDuplex } from 'ws-duplex'

let file = process.argv[2]
let scratch: string | undefined
if (file === undefined) {
  scratch = await mkdtemp(join(tmpdir(), 'ws-duplex-'))
  file = join(scratch, 'random.bin')
  await writeFile(file, randomBytes(32 * 1024 * 1024))
}
const size = (await stat(file)).size

function sha256Sink(onDone: (digest: string, bytes: number) => void): Writable {
  const hash = createHash('sha256')
  let bytes = 0
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk)
      bytes += chunk.length
      callback()
    },
    final(callback) {
      onDone(hash.digest('hex'), bytes)
      callback()
    }
  })
}

// The receiving end: hash whatever arrives, until a clean end.
const received = new Promise<{ digest: string; bytes: number }>((resolve, reject) => {
  void createServer({ port: 0, host: '127.0.0.1' }, (duplex: WsDuplex) => {
    pipeline(
      duplex,
      sha256Sink((digest, bytes) => resolve({ digest, bytes }))
    ).catch(reject)
  }).then(startSending, reject)
})

let closeServer: () => Promise<void> = async () => {}
async function startSending(server: Awaited<ReturnType<typeof createServer>>): Promise<void> {
  closeServer = () => server.close()
  const { port } = server.address() as AddressInfo
  const duplex = await connect(`ws://127.0.0.1:${port}`)
  duplex.events.on('closing', ({ code, initiator }) =>
    console.log(`closing: ${code} (${initiator})`)
  )
  duplex.events.on('close', ({ code, wasClean }) =>
    console.log(`closed: ${code}, clean: ${wasClean}`)
  )
  duplex.resume() // nothing comes back, but the readable side must end for the stream to close
  const started = performance.now()
  await pipeline(createReadStream(file as string), duplex)
  const seconds = (performance.now() - started) / 1000
  console.log(
    `sent ${size} bytes in ${seconds.toFixed(2)} s (${(size / 2 ** 20 / seconds).toFixed(0)} MiB/s)`
  )
}

const sent = createHash('sha256')
for await (const chunk of createReadStream(file)) sent.update(chunk as Buffer)
const expected = sent.digest('hex')
const { digest, bytes } = await received
console.log(`received ${bytes} bytes, sha256 ${digest.slice(0, 16)}…`)
console.log(digest === expected ? 'hash matches: the file arrived whole' : 'HASH MISMATCH')
await closeServer()
if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
if (digest !== expected || bytes !== size) process.exitCode = 1
