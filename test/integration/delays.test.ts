import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../shared/envelope.ts';
import { delayTarget } from '../../shared/topology/delay.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { JobDriver, until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

/**
 * Processing slack on top of the delay unit: the hops through up to ~7 quorum delay levels, the
 * consumer and the downstream call, on a shared 2-core machine running other tests.
 */
const SLACK_MS = 1000;

/** Delayed jobs through the binary delay levels, published as the enqueuer will (delayTarget). */
describe('delayed jobs', () => {
  const url = brokerUrl();
  let stack: Stack;
  let jobs: JobDriver;

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('delays'), services: { echo: { url: '{DEMO}' } } });
    jobs = await JobDriver.start(url, stack.topology);
  });
  afterAll(async () => {
    await jobs?.close();
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  /** Publishes with a per-message confirm; resolves with [time before publish, time of the confirm]. */
  function publishDelayed(jobId: string, delayMs: number): Promise<[number, number]> {
    const env = { ...jobs.envelope('/echo'), jobId };
    const target = delayTarget(stack.topology, 'echo', delayMs);
    const sentAt = Date.now();
    return new Promise((resolve, reject) => {
      jobs.ch.publish(target.exchange, target.routingKey, env.body, { ...encodeRequest(env), mandatory: true }, (err) => (err ? reject(err) : resolve([sentAt, Date.now()])));
    });
  }

  const firstCallAt = (jobId: string): number | undefined => stack.demo.calls.find((c) => c.idempotencyKey === jobId)?.at;

  it('200 jobs with delays over 0.5-10 s each run no earlier than asked and no later than asked + one delay unit + slack', async () => {
    const unit = stack.topology.delayUnitMs;
    const plan = Array.from({ length: 200 }, (_, i) => ({ jobId: randomUUID(), delayMs: 500 + Math.round((i * 9500) / 199 + Math.random() * 50) }));
    plan.sort(() => Math.random() - 0.5);
    const times = await Promise.all(plan.map((p) => publishDelayed(p.jobId, Math.min(p.delayMs, 10_000))));
    await until(() => plan.every((p) => firstCallAt(p.jobId) !== undefined), 10_000 + unit + SLACK_MS + 5000, 'every delayed job ran');
    const lateness = plan.map((p, i) => {
      const ran = firstCallAt(p.jobId)!;
      const delay = Math.min(p.delayMs, 10_000);
      expect(ran).toBeGreaterThanOrEqual(times[i]![0] + delay);
      return ran - times[i]![1] - delay;
    });
    expect(Math.max(...lateness)).toBeLessThanOrEqual(unit + SLACK_MS);
    expect(stack.demo.calls.filter((c) => plan.some((p) => p.jobId === c.idempotencyKey))).toHaveLength(200);
    process.stderr.write(`[delays] lateness ms: max ${Math.max(...lateness)}, median ${lateness.sort((a, b) => a - b)[100]}\n`);
  });

  it('a short delay queued after a long one is not held behind it', async () => {
    const long = randomUUID();
    const short = randomUUID();
    const [longSent] = await publishDelayed(long, 6000);
    const [shortSent] = await publishDelayed(short, 500);
    await until(() => firstCallAt(short), 5000, 'the short job ran');
    expect(firstCallAt(short)! - shortSent).toBeLessThan(500 + stack.topology.delayUnitMs + SLACK_MS);
    expect(firstCallAt(long)).toBeUndefined();
    await until(() => firstCallAt(long), 10_000, 'the long job ran');
    expect(firstCallAt(long)! - longSent).toBeGreaterThanOrEqual(6000);
  });
});
