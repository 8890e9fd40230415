import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
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
          'connect',
          'createServer'
        ])
      } else {
        expect(stdout.trim()).to.equal('default')
      }
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
