import { connect } from 'amqplib';
import { percentileOfSorted, type RunResult } from '../lib/stats.ts';

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
    const pending = new Map<string, { startedNs: bigint; done: (ok: boolean) => void }>();
    const latenciesMs: number[] = [];
    let errors = 0;
    await channel.consume('amq.rabbitmq.reply-to', (msg) => {
      if (!msg) return;
      const entry = pending.get(msg.properties.correlationId as string);
      if (!entry) return;
      pending.delete(msg.properties.correlationId as string);
      const ok = (msg.properties.headers as Record<string, unknown> | undefined)?.status === 200;
      if (ok) latenciesMs.push(Number(process.hrtime.bigint() - entry.startedNs) / 1e6);
      entry.done(ok);
    }, { noAck: true });

    let seq = 0;
    const startedMs = Date.now();
    const endMs = startedMs + o.durationS * 1000;
    const timeoutMs = o.timeoutMs ?? 30_000;
    const one = (): Promise<boolean> =>
      new Promise((resolve) => {
        const id = String(++seq);
        const timer = setTimeout(() => {
          pending.delete(id);
          resolve(false);
        }, timeoutMs);
        pending.set(id, {
          startedNs: process.hrtime.bigint(),
          done: (ok) => {
            clearTimeout(timer);
            resolve(ok);
          },
        });
        channel.publish('', o.queue, o.body, { correlationId: id, replyTo: 'amq.rabbitmq.reply-to', contentType: 'application/json' });
      });
    const worker = async (): Promise<void> => {
      while (Date.now() < endMs) if (!(await one())) errors++;
    };
    await Promise.all(Array.from({ length: o.inflight }, worker));
    const durationS = (Date.now() - startedMs) / 1000;
    const sorted = Float64Array.from(latenciesMs).sort();
    return {
      throughputPerS: latenciesMs.length / durationS,
      p50Ms: percentileOfSorted(sorted, 50),
      p99Ms: percentileOfSorted(sorted, 99),
      count: latenciesMs.length,
      errors,
      durationS,
    };
  } finally {
    await connection.close().catch(() => undefined);
  }
}
