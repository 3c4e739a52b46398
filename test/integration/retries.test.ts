import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DELAY_LEVELS } from '../../shared/topology/names.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { JobDriver, until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

const POLICY = { maxAttempts: 5, baseMs: 200, capMs: 800 };
/** Scheduling and hop latency on a shared 2-core box, on top of the delay unit. */
const SLACK_MS = 500;

describe('retries with backoff and dead-lettering after the attempt limit', () => {
  const url = brokerUrl();
  let stack: Stack;
  let jobs: JobDriver;

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('retries'), services: { echo: { url: '{DEMO}', retry: POLICY } } });
    jobs = await JobDriver.start(url, stack.topology);
  });
  afterAll(async () => {
    await jobs?.close();
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('a downstream failing 3 times then succeeding ends succeeded at attempt 4, each gap within the backoff bounds', async () => {
    const jobId = await jobs.publish('/fail-until/3');
    await until(() => jobs.final(jobId, 'succeeded'), 20_000);
    expect(jobs.statesOf(jobId)).toEqual(['queued:1', 'running:1', 'retrying:1', 'running:2', 'retrying:2', 'running:3', 'retrying:3', 'running:4', 'succeeded:4']);
    const calls = stack.demo.calls.filter((c) => c.idempotencyKey === jobId).map((c) => c.at);
    expect(calls).toHaveLength(4);
    process.stderr.write(`[retries] gaps ms: ${calls.slice(1).map((t, i) => t - calls[i]!).join(', ')}\n`);
    const unit = stack.topology.delayUnitMs;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const gap = calls[attempt]! - calls[attempt - 1]!;
      // Full jitter: the delay is drawn from [0, min(cap, base·2^(attempt-1))], rounded up to the unit.
      const ceiling = Math.min(POLICY.capMs, POLICY.baseMs * 2 ** (attempt - 1));
      expect(gap).toBeGreaterThanOrEqual(0);
      expect(gap).toBeLessThanOrEqual(ceiling + unit + SLACK_MS);
      // The retrying event announced when the next attempt was due; it did not run earlier.
      const retrying = jobs.events.find((e) => e.jobId === jobId && e.state === 'retrying' && e.attempt === attempt)!;
      expect(calls[attempt]!).toBeGreaterThanOrEqual(retrying.nextAttemptAt! - 5);
    }
  });

  it('an always-failing downstream: after max attempts the job is dead, in the DLQ with x-death reason rejected, nothing left in work or delay queues', async () => {
    const jobId = await jobs.publish('/status/503');
    await until(() => jobs.final(jobId, 'dead'), 30_000);
    expect(jobs.statesOf(jobId).filter((s) => s.startsWith('running'))).toEqual(['running:1', 'running:2', 'running:3', 'running:4', 'running:5']);
    const n = stack.topology.names;
    const dlq = await until(async () => {
      const q = await jobs.ch.checkQueue(n.deadLetterQueue('echo'));
      return q.messageCount === 1 && q;
    }, 5000, 'one message in the DLQ');
    expect(dlq.messageCount).toBe(1);
    expect((await jobs.ch.checkQueue(n.workQueue('echo'))).messageCount).toBe(0);
    for (let level = 0; level < DELAY_LEVELS; level++) expect((await jobs.ch.checkQueue(n.delayLevel(level))).messageCount).toBe(0);
    const res = await fetch(`${stack.baseUrl}/v1/dlq/echo`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items: Array<Record<string, unknown>> };
    expect(body.items).toHaveLength(1);
    expect(body.items[0]).toMatchObject({ id: jobId, reason: 'rejected', attempts: 5, deaths: 1, lastError: 'downstream answered 503', request: { method: 'POST', path: '/status/503', contentType: 'text/plain', bodyBytes: 3 } });
    expect(Date.parse(body.items[0]!.firstFailedAt as string)).toBeLessThanOrEqual(Date.parse(body.items[0]!.lastFailedAt as string) + 1000);
    expect((await fetch(`${stack.baseUrl}/v1/dlq/echo/${jobId}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('a 400 from the downstream dead-letters at once, after a single attempt', async () => {
    const jobId = await jobs.publish('/status/400');
    await until(() => jobs.final(jobId, 'failed'), 10_000);
    expect(jobs.statesOf(jobId)).toEqual(['queued:1', 'running:1', 'failed:1']);
    expect(stack.demo.calls.filter((c) => c.idempotencyKey === jobId)).toHaveLength(1);
    const entries = await until(async () => {
      const res = await fetch(`${stack.baseUrl}/v1/dlq/echo`);
      const body = (await res.json()) as { items: Array<{ id: string; reason: string; attempts: number }> };
      if (res.status !== 200) throw new Error(`browse answered ${res.status}: ${JSON.stringify(body)}`);
      return body.items.length === 1 && body.items;
    }, 5000, 'the 400 job in the DLQ');
    expect(entries[0]).toMatchObject({ id: jobId, reason: 'rejected', attempts: 1 });
  });

  it('a tenant sees, replays and discards only its own DLQ entries', async () => {
    const dlq = stack.topology.names.deadLetterQueue('echo');
    // What the earlier tests left in the DLQ, so the wait below is for the foreign job itself (the
    // `failed` event can arrive before the broker has dead-lettered the message).
    const before = (await jobs.ch.checkQueue(dlq)).messageCount;
    const foreign = await jobs.publish('/status/400', { tenant: 'other-tenant' });
    await until(() => jobs.final(foreign, 'failed'), 10_000);
    const count = await until(async () => {
      const n = (await jobs.ch.checkQueue(dlq)).messageCount;
      return n >= before + 1 && n;
    }, 5000, 'the foreign job in the DLQ');
    const body = (await (await fetch(`${stack.baseUrl}/v1/dlq/echo`)).json()) as { items: Array<{ id: string }> };
    expect(body.items.map((e) => e.id)).not.toContain(foreign);
    expect((await fetch(`${stack.baseUrl}/v1/dlq/echo/${foreign}`, { method: 'DELETE' })).status).toBe(404);
    const replay = await fetch(`${stack.baseUrl}/v1/dlq/echo/replay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ids: [foreign] }) });
    expect(await replay.json()).toMatchObject({ replayed: [], notFound: [foreign] });
    expect((await jobs.ch.checkQueue(dlq)).messageCount).toBe(count);
  });
});
