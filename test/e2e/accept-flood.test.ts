import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { jobLane } from '../../shared/topology/topology.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

const BOUND = 200;
const SENT = 600;
const CONCURRENCY = 40;
/**
 * A quorum queue tells publishers it is full only once the bound is applied, so publishes already in
 * flight then still land: at most one per concurrent request (observed 1-14 at 40 concurrent).
 */
const MAX_OVERSHOOT = CONCURRENCY;

interface Outcome {
  status: number;
  jobId: string | null;
  retryAfter: string | null;
  problemType?: string;
}

describe('accept flood: async jobs beyond the work queue bound', () => {
  const url = brokerUrl();
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('accept flood'),
      services: { echo: { url: '{DEMO}', work: { maxLength: BOUND } } },
      startDequeuer: false,
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  const post = async (i: number): Promise<Outcome> => {
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: `flood-${i}`, headers: { 'content-type': 'text/plain', prefer: 'respond-async' } });
    const text = await res.text();
    const out: Outcome = { status: res.status, jobId: res.headers.get('x-gw-job-id'), retryAfter: res.headers.get('retry-after') };
    if (res.status === 202) out.jobId = (JSON.parse(text) as { id: string }).id;
    if (res.headers.get('content-type') === 'application/problem+json') out.problemType = (JSON.parse(text) as { type: string }).type;
    return out;
  };

  it('answers every request 202 or 503 queue-full with Retry-After, queues exactly the 202s, and processes each of them once: lost = 0, duplicated = 0', async () => {
    const outcomes: Outcome[] = [];
    let next = 0;
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < SENT; i = next++) outcomes.push(await post(i));
    }));
    const floodMs = Date.now() - t0;
    expect(outcomes).toHaveLength(SENT);
    expect(outcomes.filter((o) => o.status !== 202 && o.status !== 503)).toEqual([]);
    const accepted = outcomes.filter((o) => o.status === 202);
    const refused = outcomes.filter((o) => o.status === 503);
    for (const r of refused) {
      expect(r.problemType).toMatch(/\/queue-full$/);
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    expect(accepted.length).toBeGreaterThanOrEqual(BOUND);
    expect(accepted.length).toBeLessThanOrEqual(BOUND + MAX_OVERSHOOT);
    const acceptedIds = new Set(accepted.map((o) => o.jobId!));
    expect(acceptedIds.size).toBe(accepted.length);

    // Accepted means in the queue: the broker holds exactly the 202s, none accepted-but-missing.
    const conn = await connect(url);
    const queued = await (async () => {
      try {
        const ch = await conn.createChannel();
        // Every job of the flood is tenant `default`'s: they all sit in that tenant's lane.
        return (await ch.checkQueue(stack.topology.names.workQueue('echo', jobLane(stack.topology, { service: 'echo', tenant: 'default' })))).messageCount;
      } finally {
        await conn.close();
      }
    })();
    expect(queued).toBe(accepted.length);

    const t1 = Date.now();
    await stack.startDequeuer();
    const states = await until(async () => {
      const s = await Promise.all([...acceptedIds].map(async (id) => ((await (await fetch(`${stack.baseUrl}/v1/jobs/${id}`)).json()) as { state: string }).state));
      return s.every((x) => x === 'succeeded') ? s : undefined;
    }, 40_000, 250);
    const drainMs = Date.now() - t1;
    expect(states).toHaveLength(accepted.length);
    await new Promise((r) => setTimeout(r, 300));

    const calls = stack.demo.callsByKey();
    const lost = [...acceptedIds].filter((id) => !calls.has(id)).length;
    const duplicated = [...acceptedIds].filter((id) => (calls.get(id) ?? 0) > 1).length;
    const refusedReached = refused.filter((r) => r.jobId !== null && calls.has(r.jobId)).length;
    expect({ lost, duplicated, refusedReached }).toEqual({ lost: 0, duplicated: 0, refusedReached: 0 });
    expect(refused.every((r) => r.jobId !== null)).toBe(true);
    expect(stack.demo.calls.length).toBe(accepted.length);
    // A refused request left no job behind either.
    const refusedStatuses = await Promise.all(refused.map(async (r) => (await fetch(`${stack.baseUrl}/v1/jobs/${r.jobId}`)).status));
    expect(refusedStatuses.filter((s) => s !== 404)).toEqual([]);
    console.log(`accept flood: ${SENT} async requests (${CONCURRENCY} concurrent) in ${floodMs} ms against work bound ${BOUND}: ` +
      `${accepted.length} x 202 (overshoot ${accepted.length - BOUND}), ${refused.length} x 503 queue-full; queue held ${queued}; ` +
      `all ${accepted.length} succeeded ${drainMs} ms after the dequeuer started; downstream calls ${stack.demo.calls.length}; lost 0, duplicated 0`);
  });
});
