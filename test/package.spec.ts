import { execFile } from 'node:child_process'
import { readFile, readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { expect } from 'chai'

const run = promisify(execFile)
const root = new URL('..', import.meta.url)

interface PackageJson {
  exports: Record<string, { default?: string } | string>
  bin: Record<string, string>
}

describe('package', () => {
  it('loads every exports target by its package name, from the built files', async () => {
    const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as PackageJson
    for (const subpath of Object.keys(pkg.exports)) {
      const specifier = subpath === '.' ? 'ws-duplex' : `ws-duplex/${subpath.slice(2)}`
      const attributes = specifier.endsWith('.json') ? ", { with: { type: 'json' } }" : ''
      const { stdout } = await run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const m = await import('${specifier}'${attributes}); console.log(Object.keys(m).sort().join(','))`
        ],
        { cwd: root }
      )
      if (subpath === '.') {
        expect(stdout.trim().split(',')).to.include.members([
          'WsDuplex',
          'WsDuplexError',
          'WsStream',
          'connect',
          'createServer',
          'fromWebSocket'
        ])
      } else if (subpath === './browser') {
        expect(stdout.trim().split(',')).to.include.members([
          'WsStream',
          'WsDuplexError',
          'connect',
          'fromWebSocket'
        ])
      } else {
        expect(stdout.trim()).to.equal('default')
      }
    }
  })

  it('bundles for browsers through the browser condition: no ws, no node: modules, small', async () => {
    const { build } = await import('esbuild')
    const result = await build({
      stdin: { contents: "export * from 'ws-duplex'", resolveDir: fileURLToPath(root) },
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'browser',
      write: false,
      metafile: true,
      logLevel: 'silent'
    })
    const inputs = Object.keys(result.metafile.inputs)
    expect(inputs.filter((input) => /node_modules[\\/]ws[\\/]|^node:/.test(input))).to.deep.equal(
      []
    )
    expect(inputs).to.include('dist/browser.js')
    const code = result.outputFiles[0]?.contents ?? new Uint8Array()
    const gzipped = gzipSync(code).length
    // The README states the size; this keeps it honest (and the budget explicit).
    expect(gzipped, `min+gzip ${gzipped} bytes`).to.be.below(10 * 1024)
  })

  it("gives users every package its typings import: a missing one turns public types into 'any'", async () => {
    const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as {
      dependencies: Record<string, string>
    }
    const dist = new URL('dist/', root)
    const imported = new Set<string>()
    for (const name of await readdir(dist)) {
      if (!name.endsWith('.d.ts')) continue
      const text = await readFile(new URL(name, dist), 'utf8')
      for (const [, specifier = ''] of text.matchAll(/from '([^'.][^']*)'/g)) {
        if (!specifier.startsWith('node:')) imported.add(specifier.split('/')[0] ?? specifier)
      }
    }
    expect([...imported]).to.include.members(['ws', 'it-stream-types'])
    for (const name of imported) {
      expect(pkg.dependencies, name).to.have.property(name)
      const own = JSON.parse(
        await readFile(new URL(`node_modules/${name}/package.json`, root), 'utf8')
      ) as { types?: string; typings?: string; exports?: unknown }
      const shipsTypes =
        own.types !== undefined ||
        own.typings !== undefined ||
        /"types"/.test(JSON.stringify(own.exports))
      if (!shipsTypes) expect(pkg.dependencies, `@types/${name}`).to.have.property(`@types/${name}`)
    }
  })

  it('runs every bin and prints the package version', async () => {
    const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as PackageJson & {
      version: string
    }
    for (const target of Object.values(pkg.bin)) {
      const { stdout } = await run(process.execPath, [target, '--version'], { cwd: root })
      expect(stdout.trim()).to.contain(pkg.version)
    }
  })
})
