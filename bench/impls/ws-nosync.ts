/**
 * `ws` used directly as in `ws.ts`, tuned: `allowSynchronousEvents: false`, so its receiver
 * emits one message per turn of the event loop. On the 2-core VM that reads many small
 * messages about twice as fast (a reader that waits a turn finds more bytes per read) and large
 * frames a little slower (`bench/sync-events.ts`). Not ws's default, so not the baseline.
 */
import { wsImpl } from './ws.js'

export default wsImpl(
  'ws used directly, allowSynchronousEvents: false (one message per event-loop turn)',
  { allowSynchronousEvents: false }
)
