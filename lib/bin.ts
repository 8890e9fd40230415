#!/usr/bin/env node
/**
 * The `ws-duplex` executable: runs main() on the process's stdio and sets the exit status.
 * SIGINT / SIGTERM / SIGHUP close every connection gracefully (1001) and exit with 130 / 143 /
 * 129; a second signal exits at once.
 */
import { fstatSync } from 'node:fs'
import { Readable } from 'node:stream'
import { main } from './cli.js'

/**
 * Node gives a directory on stdin (`< /`) an empty stream, which would send nothing and exit 0.
 * Reading it fails instead, as for `cat`, but only if something reads it (`listen --echo` does
 * not).
 */
function stdinStream(): Readable {
  let isDirectory = false
  try {
    isDirectory = fstatSync(0).isDirectory()
  } catch {
    // No fd 0: Node's own stream copes.
  }
  if (!isDirectory) return process.stdin
  return new Readable({
    read() {
      const error = Object.assign(new Error('EISDIR: illegal operation on a directory, read'), {
        code: 'EISDIR'
      })
      this.destroy(error)
    }
  })
}

// SIGHUP too: the terminal went away, and `--exec` commands (in sessions of their own) would
// not hear of it.
const signals = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const

// A log reader that goes away must not crash us, even with an error reported on the way out.
process.stderr.on('error', () => {})
const interrupt = new AbortController()

function onSignal(signal: keyof typeof signals): void {
  if (interrupt.signal.aborted) {
    // A hangup often comes twice (from the shell, then from the kernel as the session ends):
    // only a second interrupt the user gave cuts the graceful close short.
    if (signal !== 'SIGHUP') process.exit(signals[signal])
    return
  }
  interrupt.abort(signal)
}

for (const signal of Object.keys(signals) as (keyof typeof signals)[]) process.on(signal, onSignal)

process.exitCode = await main(process.argv.slice(2), {
  stdin: stdinStream(),
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  stderrIsTTY: process.stderr.isTTY === true,
  signal: interrupt.signal
})

for (const signal of Object.keys(signals) as (keyof typeof signals)[]) process.off(signal, onSignal)
