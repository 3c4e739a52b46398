import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeEvents, type BreakerEvent } from '../../shared/events.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { JobDriver, until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

const JOBS = 1000;
const RESET_MS = 3000;
/** Calls already in flight when the breaker opened answer within this time (the demo answers at once). */
const SETTLE_MS = 500;

describe('breaker open pauses job consumption', () => {
  const url = brokerUrl();
  let stack: Stack;
  let jobs: JobDriver;
  let conn: ChannelModel;
  const breakerEvents: BreakerEvent[] = [];

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('breaker pause'),
      services: {
        echo: {
          url: '{DEMO}',
          retry: { maxAttempts: 50, baseMs: 100, capMs: 500 },
          breaker: { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeoutMs: RESET_MS },
        },
      },
    });
    jobs = await JobDriver.start(url, stack.topology);
    conn = await connect(url);
    const ch = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, stack.topology.names.eventsExchange, 'breaker.#');
    await ch.consume(q.queue, (msg) => {
      for (const e of (msg && decodeEvents(msg.content)?.events) ?? []) if (e.kind === 'breaker') breakerEvents.push(e);
    }, { noAck: true });
  });
  afterAll(async () => {
    await conn?.close();
    await jobs?.close();
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  const attempts = async (): Promise<number> => (await stack.dequeuer!.metrics.attempts.get()).values.find((v) => v.labels.service === 'echo')?.value ?? 0;

  it('with 1,000 queued jobs: no downstream calls and no attempts while open, all 1,000 succeed after recovery', async () => {
    stack.demo.down = true;
    const ids = await jobs.publishMany(Array.from({ length: JOBS }, () => '/echo'));
    const opened = await until(() => breakerEvents.find((e) => e.state === 'open'), 15_000, 'breaker open');
    const downstream = stack.dequeuer!.downstreams.get('echo')!;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const callsAtOpen = stack.demo.calls.length;
    const attemptsAtOpen = await attempts();
    // Watch the open window until shortly before the half-open probe is due.
    while (Date.now() < opened.at + RESET_MS - 300) {
      expect(downstream.state).toBe('open');
      expect(stack.demo.calls.length).toBe(callsAtOpen);
      expect(await attempts()).toBe(attemptsAtOpen);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(stack.demo.calls.length).toBe(callsAtOpen);
    expect(await attempts()).toBe(attemptsAtOpen);
    // Most jobs were never pulled: they waited in the queue.
    expect(attemptsAtOpen).toBeLessThan(100);

    stack.demo.down = false;
    await until(() => ids.every((id) => jobs.final(id, 'succeeded')), 90_000, 'every job succeeded');
    expect(breakerEvents.map((e) => e.state)).toContain('closed');
    expect(ids.filter((id) => jobs.final(id, 'dead'))).toEqual([]);
    const ok = new Set(stack.demo.calls.filter((c) => c.status === 200).map((c) => c.idempotencyKey));
    expect(ids.filter((id) => !ok.has(id))).toEqual([]);
    process.stderr.write(`[breaker] attempts before open ${attemptsAtOpen}, total ${await attempts()}, downstream calls ${stack.demo.calls.length}\n`);
  });
});
