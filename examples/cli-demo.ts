/**
 * The `ws-duplex` command moving a file over a WebSocket on 127.0.0.1, both ends in one go:
 *
 *   ws-duplex listen 127.0.0.1:0 --on-eof wait > received.bin     (terminal 1)
 *   ws-duplex connect ws://127.0.0.1:PORT --progress < file.bin    (terminal 2)
 *
 * Run: npm run demo [-- file]   (without a file, 64 MiB of random bytes)
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url))
const scratch = await mkdtemp(join(tmpdir(), 'ws-duplex-demo-'))
let file = process.argv[2]
if (file === undefined) {
  file = join(scratch, 'random.bin')
  await writeFile(file, randomBytes(64 * 1024 * 1024))
}
const received = join(scratch, 'received.bin')

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

function exited(child: ReturnType<typeof spawn>): Promise<number> {
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)))
  )
}

// Terminal 1: receive into a file. --on-eof wait: this side has nothing to send, so it waits
// for the sender's close instead of closing at once (a WebSocket has no half-close).
console.log('$ ws-duplex listen 127.0.0.1:0 --on-eof wait > received.bin')
const listener = spawn(process.execPath, [bin, 'listen', '127.0.0.1:0', '--on-eof', 'wait'], {
  stdio: ['ignore', 'pipe', 'pipe']
})
listener.stdout.pipe(createWriteStream(received))
const listenerDone = exited(listener)
const url = await new Promise<string>((resolve, reject) => {
  let text = ''
  listener.stderr.on('data', (chunk: Buffer) => {
    text += chunk.toString()
    process.stderr.write(chunk)
    const match = /listening on (ws:\/\/\S+)/.exec(text)
    if (match?.[1]) resolve(match[1])
  })
  listener.on('exit', () => reject(new Error('the listener exited before listening')))
})

// Terminal 2: send the file, with progress on stderr.
console.log(`$ ws-duplex connect ${url} --progress < ${file}`)
const sender = spawn(process.execPath, [bin, 'connect', url, '--progress'], {
  stdio: ['pipe', 'ignore', 'inherit']
})
createReadStream(file).pipe(sender.stdin)
const [senderCode, listenerCode] = await Promise.all([exited(sender), listenerDone])

const [sent, got] = await Promise.all([sha256(file), sha256(received)])
const size = (await stat(file)).size
console.log(`sender exit ${senderCode}, listener exit ${listenerCode} (0 = clean close)`)
console.log(`sent     ${size} bytes  sha256 ${sent}`)
console.log(`received ${(await stat(received)).size} bytes  sha256 ${got}`)
console.log(sent === got ? 'the file arrived whole' : 'MISMATCH')
await rm(scratch, { recursive: true, force: true })
process.exitCode = sent === got && senderCode === 0 && listenerCode === 0 ? 0 : 1
