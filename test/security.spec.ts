import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { connect, createServer, type VerifyClientInfo, type WsDuplex } from '../lib/index.js'
import { Opcode, encodeFrame, startRawServer } from './helpers/raw-peer.js'
import { Cleanup, openRawPair, streamError } from './helpers/servers.js'
import { collect, onceWithin, withTimeout } from './helpers/wait.js'

const run = promisify(execFile)
const cleanup = new Cleanup()
afterEach(() => cleanup.run())

/** A self-signed certificate for 127.0.0.1, made now so no key is ever committed. */
async function selfSignedCertificate(): Promise<{ key: Buffer; cert: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'ws-duplex-tls-'))
  try {
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem')
    ])
    return {
      key: await readFile(join(dir, 'key.pem')),
      cert: await readFile(join(dir, 'cert.pem'))
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('security', () => {
  describe('wss://', () => {
    let tls: { key: Buffer; cert: Buffer }
    before(async function () {
      this.timeout(20_000)
      tls = await selfSignedCertificate()
    })

    async function tlsServer(onConnection: (duplex: WsDuplex) => void): Promise<string> {
      const https = createHttpsServer({ key: tls.key, cert: tls.cert })
      await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
      const secureSeen: boolean[] = []
      const server = await createServer(
        {
          server: https,
          verifyClient: (info: VerifyClientInfo) => secureSeen.push(info.secure) > 0
        },
        onConnection
      )
      cleanup.add(async () => {
        await server.close()
        https.closeAllConnections()
        await new Promise((resolve) => https.close(resolve))
      })
      return `wss://127.0.0.1:${(https.address() as AddressInfo).port}`
    }

    it('connects with the certificate authority given as ca, and carries bytes', async () => {
      const received = new Promise<Buffer>((resolve, reject) => {
        void tlsServer((duplex) => collect(duplex).then(resolve, reject)).then(async (url) => {
          const client = await connect(url, { ca: tls.cert })
          client.resume()
          client.end(Buffer.from('over tls'))
        }, reject)
      })
      expect((await withTimeout(received, 5000, 'the bytes')).toString()).to.equal('over tls')
    })

    it('refuses a certificate it cannot verify with ERR_CONNECT_FAILED', async () => {
      const url = await tlsServer(() => {})
      const error = await connect(url).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string; cause?: { code?: string } }
      )
      expect(error).to.include({ code: 'ERR_CONNECT_FAILED' })
      expect(error?.cause?.code).to.equal('DEPTH_ZERO_SELF_SIGNED_CERT')
    })

    it('tells verifyClient the connection is secure', async () => {
      let secure: boolean | undefined
      const https = createHttpsServer({ key: tls.key, cert: tls.cert })
      await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
      const server = await createServer({
        server: https,
        verifyClient: (info) => {
          secure = info.secure
          return true
        }
      })
      cleanup.add(async () => {
        await server.close()
        https.closeAllConnections()
        await new Promise((resolve) => https.close(resolve))
      })
      const client = await connect(`wss://127.0.0.1:${(https.address() as AddressInfo).port}`, {
        ca: tls.cert
      })
      client.destroy()
      expect(secure).to.equal(true)
    })
  })

  describe('permessage-deflate', () => {
    it('applies maxPayload after inflation', async () => {
      const failure = new Promise<Error & { code?: string; closeCode?: number }>((resolve) => {
        void createServer(
          { port: 0, host: '127.0.0.1', perMessageDeflate: true, maxPayload: 1024 },
          (duplex) => {
            duplex.resume()
            void streamError(duplex).then(resolve)
          }
        ).then(async (server) => {
          cleanup.add(() => server.close())
          const { port } = server.address() as AddressInfo
          const client = await connect(`ws://127.0.0.1:${port}`, { perMessageDeflate: true })
          client.on('error', () => {})
          client.resume()
          expect(client.socket.extensions).to.contain('permessage-deflate')
          // 1 MiB of zeros compresses to about 1 KiB on the wire: only inflation reveals it.
          client.write(Buffer.alloc(1024 * 1024))
        })
      })
      expect(await withTimeout(failure, 5000, 'the server side to fail')).to.include({
        code: 'ERR_PAYLOAD_TOO_LARGE',
        closeCode: 1009
      })
    })
  })

  describe('error messages', () => {
    it('never carry header secrets from a refused handshake', async () => {
      const raw = await startRawServer({
        respond: () => 'HTTP/1.1 401 Unauthorized\r\nContent-Length: 14\r\n\r\nSECRET-IN-BODY'
      })
      cleanup.add(() => raw.close())
      const error = await connect(raw.url, {
        headers: { Authorization: 'Bearer SECRET-TOKEN' }
      }).then(
        () => undefined,
        (e: unknown) => e as Error
      )
      expect(error).to.include({ code: 'ERR_HANDSHAKE_REJECTED', status: 401 })
      const everything = `${error?.message} ${error?.stack} ${String(error?.cause)}`
      expect(everything).not.to.contain('SECRET-TOKEN')
      expect(everything).not.to.contain('SECRET-IN-BODY')
    })

    it('never carry payload bytes', async () => {
      const raw = await startRawServer()
      cleanup.add(() => raw.close())
      const duplex = await connect(raw.url, { maxPayload: 64 })
      const peer = await raw.nextPeer()
      const errors: Error[] = []
      duplex.events.on('warning', (error) => errors.push(error))
      peer.sendText('SECRET-PAYLOAD in a text frame')
      duplex.resume()
      const failed = streamError(duplex)
      expect((await peer.readUntilClose()).close?.code).to.equal(1003)
      peer.sendClose(1003)
      errors.push(await failed)
      const other = await connect(raw.url, { maxPayload: 64 })
      const otherPeer = await raw.nextPeer()
      other.resume()
      const otherFailed = streamError(other)
      otherPeer.sendBinary(Buffer.from('SECRET-PAYLOAD'.repeat(10)))
      errors.push(await otherFailed)
      expect(errors.map((e) => (e as { code?: string }).code)).to.deep.equal([
        'ERR_TEXT_FRAME',
        'ERR_TEXT_FRAME',
        'ERR_PAYLOAD_TOO_LARGE'
      ])
      for (const error of errors) {
        expect(`${error.message} ${error.stack} ${String(error.cause)}`).not.to.contain('SECRET')
      }
    })
  })

  describe('a server that goes away during the handshake', () => {
    it('fails connect() with ERR_CONNECT_FAILED and leaves nothing open', async () => {
      const raw = await startRawServer({ noUpgradeResponse: true })
      cleanup.add(() => raw.close())
      const attempt = connect(raw.url).then(
        () => undefined,
        (e: unknown) => e
      )
      const peer = await raw.nextPeer()
      peer.reset()
      expect(await withTimeout(attempt, 3000, 'connect() to fail')).to.include({
        code: 'ERR_CONNECT_FAILED'
      })
    })
  })

  describe('a peer that floods pings', () => {
    it('is cut off by ws, and the stream fails with ERR_ABNORMAL_CLOSURE', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      const failed = streamError(duplex)
      duplex.resume()
      // ws answers each ping (§5.5.2) but terminates once more than 60 pongs are waiting to be
      // written (its maxPendingAutoPongs): 1,000 pings in one TCP chunk are far past that.
      const ping = encodeFrame({ opcode: Opcode.Ping, payload: Buffer.alloc(125) })
      peer.writeRaw(Buffer.concat(Array.from({ length: 1000 }, () => ping)))
      const error = await failed
      expect(error).to.include({ code: 'ERR_ABNORMAL_CLOSURE', closeCode: 1006 })
      await peer.tcpClosed()
    })
  })

  describe('a peer that stops reading', () => {
    it('blocks the writer with bounded memory, and destroy() still finishes at once', async () => {
      const { duplex, peer } = await openRawPair(cleanup)
      peer.pause()
      const chunk = Buffer.alloc(1024 * 1024)
      let accepted = 0
      while (duplex.write(chunk)) {
        accepted += chunk.length
        // The kernel's socket buffers take a few MiB; past them write() must return false.
        expect(accepted, 'bytes accepted before write() returns false').to.be.below(64 << 20)
      }
      // Held in this process: under the high water mark before the write that crossed it.
      expect(duplex.socket.bufferedAmount).to.be.at.most(256 * 1024 + chunk.length)
      const closed = onceWithin(duplex, 'close', 1000)
      duplex.destroy()
      await closed
    })
  })
})
