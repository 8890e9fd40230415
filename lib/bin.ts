#!/usr/bin/env node
/**
 * The `ws-duplex` executable: runs main() on the process's stdio and sets the exit status.
 * SIGINT / SIGTERM / SIGHUP close every connection gracefully (1001) and exit with 130 / 143 /
 * 129; a second signal exits at once.
 */
import { main } from './cli.js'

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
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  stderrIsTTY: process.stderr.isTTY === true,
  signal: interrupt.signal
})

for (const signal of Object.keys(signals) as (keyof typeof signals)[]) process.off(signal, onSignal)
