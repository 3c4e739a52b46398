import { connect } from 'amqplib';
import { closedLoop, type RunResult } from '../lib/stats.ts';

export interface RawPublishOptions {
  url: string;
  queue: string;
  body: Buffer;
  /** Unconfirmed publishes at once (the enqueuer's window as its HTTP load fills it). */
  inflight: number;
  durationS: number;
}

/**
 * Raw publish ceiling: persistent messages on one confirm channel straight into a queue, `inflight`
 * unconfirmed at once; a publish counts when the broker confirmed it, a nack is an error.
 */
export async function runRawPublish(o: RawPublishOptions): Promise<RunResult> {
  const connection = await connect(o.url, { noDelay: true });
  try {
    const channel = await connection.createConfirmChannel();
    const one = (): Promise<number | undefined> =>
      new Promise((resolve) => {
        const started = process.hrtime.bigint();
        channel.publish('', o.queue, o.body, { persistent: true, mandatory: true, contentType: 'application/json' }, (err: unknown) => {
          resolve(err ? undefined : Number(process.hrtime.bigint() - started) / 1e6);
        });
      });
    return await closedLoop(o.inflight, o.durationS, one);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** Puts `count` persistent messages into `queue` (1024 unconfirmed at most), bounded by `maxDurationS`. */
export async function fillQueue(url: string, queue: string, body: Buffer, count: number, maxDurationS: number): Promise<number> {
  const connection = await connect(url, { noDelay: true });
  try {
    const channel = await connection.createConfirmChannel();
    const endMs = Date.now() + maxDurationS * 1000;
    let sent = 0;
    let confirmed = 0;
    const worker = async (): Promise<void> => {
      while (sent < count && Date.now() < endMs) {
        sent++;
        const ok = await new Promise<boolean>((resolve) => {
          channel.publish('', queue, body, { persistent: true, contentType: 'application/json' }, (err: unknown) => resolve(!err));
        });
        if (ok) confirmed++;
      }
    };
    await Promise.all(Array.from({ length: 1024 }, worker));
    return confirmed;
  } finally {
    await connection.close().catch(() => undefined);
  }
}
