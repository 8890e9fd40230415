// Compiled by .ci/consumer-types in a project that installed the packed ws-duplex as a user
// would: the public types must resolve (no silent `any`) under --strict, without skipLibCheck.
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { connect, createServer, WsDuplex, WsDuplexError, type ConnectOptions } from 'ws-duplex'
import { connect as connectWhatwg, type WsStream } from 'ws-duplex/browser'

export async function usesTheTypes(): Promise<void> {
  const server = await createServer({ host: '127.0.0.1', port: 0 }, (duplex) => {
    void pipeline(duplex, duplex)
  })
  // ws's client options pass through (their types come with the package).
  const options: ConnectOptions = { headers: { authorization: 'Bearer x' }, keepAlive: true }
  const duplex: WsDuplex = await connect('ws://127.0.0.1:1/', options)
  // @ts-expect-error `socket` is a ws WebSocket: an unknown member is an error, not `any`.
  duplex.socket.noSuchMember()
  const protocol: string = duplex.socket.protocol
  for await (const chunk of duplex) {
    const bytes: Buffer = chunk
    // @ts-expect-error chunks are Buffers, not `any`
    const text: number = chunk
    void [bytes, text]
  }
  await pipeline(Readable.from([Buffer.from('x')]), duplex)
  await duplex.sink([new Uint8Array(1)])
  duplex.events.on('warning', (warning: WsDuplexError) => void warning.code)
  const stream: WsStream = await connectWhatwg('ws://127.0.0.1:1/')
  for await (const chunk of stream.source) void (chunk satisfies Uint8Array)
  void protocol
  await server.close()
}
