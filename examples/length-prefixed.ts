/**
 * Framed messages with it-pipe and it-length-prefixed over the source/sink face. Each small
 * prefix + payload pair leaves as one WebSocket frame because queued writes are coalesced.
 * Run: npx tsx examples/length-prefixed.ts
 */
import type { AddressInfo } from 'node:net'
import { pipe } from 'it-pipe'
import * as lp from 'it-length-prefixed'
import { connect, createServer } from 'ws-duplex'

// The server answers each message with its upper-cased text.
const server = await createServer({ port: 0, host: '127.0.0.1' }, (duplex) => {
  void pipe(
    duplex,
    (source) => lp.decode(source),
    async function* (messages) {
      for await (const message of messages) {
        yield new TextEncoder().encode(new TextDecoder().decode(message.subarray()).toUpperCase())
      }
    },
    (source) => lp.encode(source),
    duplex
  ).catch((error: unknown) => console.error('server side:', error))
})
const { port } = server.address() as AddressInfo
const client = await connect(`ws://127.0.0.1:${port}`)

const words = ['alpha', 'beta', 'gamma', 'delta']
let allAnswered: () => void = () => {}
const answered = new Promise<void>((resolve) => (allAnswered = resolve))
const replies: string[] = []

await pipe(
  async function* () {
    for (const word of words) yield new TextEncoder().encode(word)
    await answered // keep the connection open until every reply is in
  },
  (source) => lp.encode(source),
  client,
  (source) => lp.decode(source),
  async (source) => {
    for await (const reply of source) {
      replies.push(new TextDecoder().decode(reply.subarray()))
      if (replies.length === words.length) allAnswered()
    }
  }
)
console.log(`replies: ${replies.join(' ')}`)
await server.close()
if (replies.join() !== words.map((w) => w.toUpperCase()).join()) process.exitCode = 1
