/**
 * Browser code: length-prefixed messages to a ws-duplex server and back, over the browser's own
 * WebSocket. Bundle it with any bundler; `import 'ws-duplex'` picks the browser build by itself.
 *   npx esbuild examples/browser/app.ts --bundle --format=esm --outfile=app.js
 */
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import { connect } from 'ws-duplex'

const url = new URL('/ws', location.href)
url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'

const stream = await connect(url.href)
stream.events.on('warning', (error) => console.warn(error.code, error.message))

const encoder = new TextEncoder()
const messages = ['hello', 'from', 'the', 'browser'].map((word) => encoder.encode(word))
const replies: string[] = []
let allBack = (): void => {}
const done = new Promise<void>((resolve) => (allBack = resolve))

async function* outgoing(): AsyncGenerator<Uint8Array> {
  yield* messages
  await done // a WebSocket has no half-close: close only once every reply is in
}

await pipe(
  outgoing(),
  (source) => lp.encode(source),
  stream,
  (source) => lp.decode(source),
  async (source) => {
    for await (const reply of source) {
      replies.push(new TextDecoder().decode(reply.subarray()))
      if (replies.length === messages.length) allBack()
    }
  }
)

document.body.textContent = `replies: ${replies.join(' ')}; closed ${JSON.stringify(stream.closeInfo)}`
