import { connect } from 'amqplib';
import { percentileOfSorted, type RunResult } from '../lib/stats.ts';

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
    const latenciesMs: number[] = [];
    let errors = 0;
    const startedMs = Date.now();
    const endMs = startedMs + o.durationS * 1000;
    const one = (): Promise<boolean> =>
      new Promise((resolve) => {
        const started = process.hrtime.bigint();
        channel.publish('', o.queue, o.body, { persistent: true, mandatory: true, contentType: 'application/json' }, (err: unknown) => {
          if (!err) latenciesMs.push(Number(process.hrtime.bigint() - started) / 1e6);
          resolve(!err);
        });
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
