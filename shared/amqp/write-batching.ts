import type { ChannelModel } from 'amqplib';
import type { Writable } from 'node:stream';

const batched = new WeakSet<Writable>();

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
export function batchSocketWrites(model: ChannelModel): boolean {
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
      process.nextTick(uncork);
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
