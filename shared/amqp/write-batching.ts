import type { ChannelModel } from 'amqplib';
import type { Writable } from 'node:stream';

const batched = new WeakSet<Writable>();

/**
 * When a corked socket is uncorked. `loop` (default): in the check phase of the event-loop
 * iteration (`setImmediate`), so frames written by every I/O callback of one poll phase (replies to
 * several downstream answers, publishes of several HTTP requests) share one `writev`. `tick`: on the
 * next tick, so only the frames of one callback do (docs/adr/0006, docs/adr/1400).
 */
export type WriteBatching = 'loop' | 'tick';

/**
 * Makes the frames one event-loop turn writes to the broker leave in one `writev`.
 *
 * amqplib's `Mux` writes every queued frame (a publish, an ack, a reply) to the socket with its own
 * `socket.write`; with `noDelay` each is a syscall and a TCP segment, and socket writes were the
 * largest self time in both services' CPU profiles (bench/what-limits-it.md). Here the socket is
 * corked at the first write of a turn and uncorked on the next tick, so nothing waits for a timer
 * and the frames keep their order. The same technique, measured, is toa-io/comq#285; it belongs in
 * amqplib's Mux loop and goes away when amqplib carries it (see docs/adr/0006).
 *
 * Returns false, changing nothing, when the connection does not expose the socket shape this
 * relies on (a future amqplib); the broker then sees the same frames, only in more writes.
 */
export function batchSocketWrites(model: ChannelModel, schedule: WriteBatching = 'loop'): boolean {
  const socket = (model as unknown as { connection?: { stream?: unknown } }).connection?.stream;
  if (!isCorkable(socket)) return false;
  if (batched.has(socket)) return true;
  batched.add(socket);
  const write = socket.write;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = function batchedWrite(this: Writable, ...args: Parameters<Writable['write']>): boolean {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      if (schedule === 'loop') setImmediate(uncork);
      else process.nextTick(uncork);
    }
    return write.apply(this, args);
  } as Writable['write'];
  return true;
}

function isCorkable(value: unknown): value is Writable {
  if (typeof value !== 'object' || value === null) return false;
  const s = value as Partial<Writable>;
  return typeof s.write === 'function' && typeof s.cork === 'function' && typeof s.uncork === 'function';
}
