import { connect } from 'amqplib';
import { closedLoop, type RunResult } from '../lib/stats.ts';

export interface RawRpcOptions {
  url: string;
  queue: string;
  body: Buffer;
  /** Requests in flight at once. */
  inflight: number;
  durationS: number;
  /** A request not answered in this time counts as an error. @default 30000 */
  timeoutMs?: number;
}

/**
 * Raw RPC ceiling, client side: request-reply over direct reply-to with `inflight` requests
 * outstanding on one channel (no confirms, no HTTP), bounded by `durationS`.
 */
export async function runRawRpc(o: RawRpcOptions): Promise<RunResult> {
  const connection = await connect(o.url, { noDelay: true });
  try {
    const channel = await connection.createChannel();
    const pending = new Map<string, { startedNs: bigint; done: (latencyMs: number | undefined) => void }>();
    await channel.consume('amq.rabbitmq.reply-to', (msg) => {
      if (!msg) return;
      const entry = pending.get(msg.properties.correlationId as string);
      if (!entry) return;
      pending.delete(msg.properties.correlationId as string);
      const ok = (msg.properties.headers as Record<string, unknown> | undefined)?.status === 200;
      entry.done(ok ? Number(process.hrtime.bigint() - entry.startedNs) / 1e6 : undefined);
    }, { noAck: true });

    let seq = 0;
    const timeoutMs = o.timeoutMs ?? 30_000;
    const one = (): Promise<number | undefined> =>
      new Promise((resolve) => {
        const id = String(++seq);
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve(undefined);
        }, timeoutMs);
        pending.set(id, {
          startedNs: process.hrtime.bigint(),
          done: (latencyMs) => {
            clearTimeout(timer);
            resolve(latencyMs);
          },
        });
        channel.publish('', o.queue, o.body, { correlationId: id, replyTo: 'amq.rabbitmq.reply-to', contentType: 'application/json' });
      });
    return await closedLoop(o.inflight, o.durationS, one);
  } finally {
    await connection.close().catch(() => undefined);
  }
}
