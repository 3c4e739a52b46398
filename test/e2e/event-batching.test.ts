import { randomUUID } from 'node:crypto';
import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeEvents, MARKER_ROUTING_KEY } from '../../shared/events.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';
import type { Registry } from 'prom-client';

/** Upper bound (ms) of the bucket holding the `q` quantile of a histogram in `registries` (summed). */
async function quantileMs(registries: Registry[], name: string, q: number): Promise<number | undefined> {
  const buckets = new Map<number, number>();
  for (const r of registries) {
    const metric = r.getSingleMetric(name);
    if (!metric) continue;
    for (const v of (await metric.get()).values) {
      if (!(v as { metricName?: string }).metricName?.endsWith('_bucket')) continue;
      const le = v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + v.value);
    }
  }
  const total = buckets.get(Number.POSITIVE_INFINITY) ?? 0;
  if (total === 0) return undefined;
  for (const le of [...buckets.keys()].sort((a, b) => a - b)) if (buckets.get(le)! >= q * total) return le * 1000;
  return undefined;
}

const JOBS = 10_000;
const CONCURRENCY = 64;

/**
 * Issue 11: transitions travel in batches. 10,000 jobs accepted over HTTP while one dequeuer drains
 * them put at most 2,000 messages into the events stream, counted by reading the stream itself
 * from the broker up to a marker published after the run.
 */
describe('events stream batching', () => {
  const url = brokerUrl();
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('event batching'), services: { echo: { url: '{DEMO}' } }, enqueuerEnv: { LOG_REQUEST_SAMPLE: '0' } });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it(`${JOBS} jobs through one dequeuer publish at most ${JOBS / 5} stream messages (read from the stream)`, async () => {
    const ids: string[] = [];
    let next = 0;
    const started = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < JOBS) {
        next++;
        const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', 'content-type': 'text/plain' } });
        expect(res.status).toBe(202);
        ids.push(((await res.json()) as { id: string }).id);
      }
    }));
    const acceptedMs = Date.now() - started;
    await until(async () => {
      for (const id of ids.slice(-200)) if ((await stack.enqueuer.stores.jobs.get('default', id))?.state !== 'succeeded') return undefined;
      return true;
    }, 60_000, 'last jobs succeeded');

    // Read the stream from its first message up to an end marker published now.
    const conn = await connect(url);
    try {
      const ch = await conn.createConfirmChannel();
      const end = randomUUID();
      ch.publish(stack.topology.names.eventsExchange, MARKER_ROUTING_KEY, Buffer.from(JSON.stringify({ v: 2, kind: 'marker', id: end })), { mandatory: true });
      await ch.waitForConfirms();
      await ch.prefetch(1000);
      let messages = 0;
      let markers = 0;
      const states = new Map<string, Set<string>>();
      await new Promise<void>((resolve, reject) => {
        void ch.consume(stack.topology.names.eventsStream, (msg) => {
          if (!msg) return;
          ch.ack(msg);
          const decoded = decodeEvents(msg.content);
          if (!decoded) return reject(new Error('undecodable stream message'));
          if (decoded.marker !== undefined) {
            markers++;
            if (decoded.marker === end) resolve();
            return;
          }
          messages++;
          for (const e of decoded.events) {
            if (e.kind !== 'job') continue;
            let s = states.get(e.jobId);
            if (!s) states.set(e.jobId, (s = new Set()));
            s.add(e.state);
          }
        }, { arguments: { 'x-stream-offset': 'first' } }).catch(reject);
      });
      const registries = [stack.enqueuer.registry, stack.dequeuer!.registry];
      const [wait50, wait99, vis50, vis99] = await Promise.all([
        quantileMs(registries, 'gw_event_batch_wait_seconds', 0.5), quantileMs(registries, 'gw_event_batch_wait_seconds', 0.99),
        quantileMs([stack.enqueuer.registry], 'gw_events_visibility_seconds', 0.5), quantileMs([stack.enqueuer.registry], 'gw_events_visibility_seconds', 0.99),
      ]);
      process.stderr.write(`[event batching] ${JOBS} jobs accepted in ${acceptedMs} ms (${CONCURRENCY} clients, dequeuer draining); ` +
        `${messages} batch messages + ${markers} markers in the stream = ${(messages / JOBS).toFixed(3)} messages/job; ` +
        `batch wait p50 ≤ ${wait50} ms p99 ≤ ${wait99} ms; visibility p50 ≤ ${vis50} ms p99 ≤ ${vis99} ms\n`);
      expect(messages).toBeLessThanOrEqual(JOBS / 5);
      // The batches hold every job's transitions: nothing was dropped to get there.
      expect(ids.filter((id) => !['queued', 'running', 'succeeded'].every((s) => states.get(id)?.has(s)))).toEqual([]);
    } finally {
      await conn.close();
    }
  });
});
