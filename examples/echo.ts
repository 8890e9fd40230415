/**
 * An echo server and a client on loopback. The client reads back everything it sent before it
 * closes: a WebSocket has no half-close, so ending first would cut the echo short.
 * Run: npx tsx examples/echo.ts
 */
import type { AddressInfo } from 'node:net'
import { connect, createServer } from 'ws-duplex'

const server = await createServer({ port: 0, host: '127.0.0.1' }, (duplex) => {
  duplex.on('error', (error) => console.error('server side:', error))
  duplex.pipe(duplex)
})
const { port } = server.address() as AddressInfo

const client = await connect(`ws://127.0.0.1:${port}`)
const message = Buffer.from('hello over a WebSocket byte stream')
client.write(message)

let echoed = Buffer.alloc(0)
for await (const chunk of client) {
  echoed = Buffer.concat([echoed, chunk as Buffer])
  if (echoed.length === message.length) break // break closes with 1000
}
console.log(`echoed: ${echoed.toString()}`)

await server.close()
if (!echoed.equals(message)) process.exitCode = 1
