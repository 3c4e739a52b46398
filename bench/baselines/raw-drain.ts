import { connect } from 'amqplib';
import { Pool } from 'undici';
import type { RunResult } from '../lib/stats.ts';

export interface RawDrainOptions {
  url: string;
  queue: string;
  /** Messages to drain (the queue holds this many). */
  count: number;
  prefetch: number;
  /** Downstream endpoint each message is POSTed to. */
  downstreamUrl: string;
  maxDurationS: number;
  /** Called once the consumer is registered. */
  onReady?: () => void;
}

/**
 * Raw drain ceiling: a minimal consumer with the project's work prefetch that POSTs each message to
 * the downstream with undici and acks it (a non-2xx answer is nacked without requeue and counted as
 * an error). Ends when `count` messages are settled or after `maxDurationS`.
 */
export async function runRawDrain(o: RawDrainOptions): Promise<RunResult> {
  const target = new URL(o.downstreamUrl);
  const pool = new Pool(target.origin, { connections: 64, keepAliveTimeout: 10_000 });
  const connection = await connect(o.url, { noDelay: true });
  try {
    const channel = await connection.createChannel();
    await channel.prefetch(o.prefetch);
    let acked = 0;
    let errors = 0;
    const startedMs = Date.now();
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const guard = setTimeout(() => done(), o.maxDurationS * 1000);
    await channel.consume(o.queue, (msg) => {
      if (!msg) return;
      void pool
        .request({ method: 'POST', path: target.pathname, headers: { 'content-type': 'application/json' }, body: msg.content })
        .then(async (res) => {
          await res.body.arrayBuffer();
          return res.statusCode >= 200 && res.statusCode < 300;
        })
        .catch(() => false)
        .then((ok) => {
          if (ok) {
            channel.ack(msg);
            acked++;
          } else {
            channel.nack(msg, false, false);
            errors++;
          }
          if (acked + errors >= o.count) done();
        });
    }, { noAck: false });
    o.onReady?.();
    await finished;
    clearTimeout(guard);
    const durationS = (Date.now() - startedMs) / 1000;
    return { throughputPerS: acked / durationS, p50Ms: undefined, p99Ms: undefined, count: acked, errors: errors + Math.max(0, o.count - acked - errors), durationS };
  } finally {
    await connection.close().catch(() => undefined);
    await pool.close();
  }
}
