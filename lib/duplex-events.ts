/** The Node face's out-of-band channel: Node's own EventEmitter, typed with the same events. */
import { EventEmitter } from 'node:events'
import type { WsDuplexEvents } from './events.js'

export class DuplexEvents extends EventEmitter<WsDuplexEvents> {}
