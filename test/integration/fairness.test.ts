import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { jobLane } from '../../shared/topology/topology.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/jobs.ts';
import { PacedDownstream, publishBacklog, submitJobs } from '../support/paced-downstream.ts';
import { Stack } from '../support/stack.ts';

const key = (t: string): string => `gwk_fairness-${t}-0123456789abcdefghijklmn`;
const TENANTS = ['a', 'b', 'c', 'd'];
const keysDoc = {
  keys: TENANTS.map((t) => ({ id: `${t}-key`, sha256: hashKey(key(t)), tenant: t })),
  // c is capped at 5 jobs in flight per service (read by the dequeuer).
  tenants: { c: { maxConcurrency: 5 } },
};

/**
 * Tenant fairness and per-tenant concurrency on a real broker (docs/adr/1700-fair-lanes-priority-pacing.md):
 * a downstream taking 100 ms per call, at most 20 calls at once (work.prefetch 20).
 */
describe('tenant fairness: lanes served round-robin, per-tenant caps', () => {
  const url = brokerUrl();
  const downstream = new PacedDownstream({ latencyMs: 100 });
  let stack: Stack;

  beforeAll(async () => {
    await downstream.listen();
    const env = { API_KEYS_JSON: JSON.stringify(keysDoc), NOISY_TENANT_FRACTION: '0.5', NOISY_TENANT_SUSTAIN_MS: '1000' };
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('fairness'),
      services: { fair: { url: downstream.url, work: { prefetch: 20 } } },
      enqueuerEnv: env,
      dequeuerEnv: env,
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
    await downstream.close();
  });

  it('5,000 jobs of A, then 50 of B: all of B done within 3 s, all of A done too (lost 0)', async () => {
    // Precondition of the scenario: A and B hash to different lanes (a shared lane is FIFO among its tenants).
    expect(jobLane(stack.topology, { service: 'fair', tenant: 'a' })).not.toBe(jobLane(stack.topology, { service: 'fair', tenant: 'b' }));
    // A's 5,000 straight into A's lane (HTTP would take tens of seconds here); B's 50 through the enqueuer.
    await publishBacklog({ url, topology: stack.topology, service: 'fair', tenant: 'a', count: 5000 });
    await until(() => downstream.succeeded((c) => c.tenant === 'a').length >= 100, 10_000, 'A running');
    // A's backlog is now thousands of jobs deep: at 20 × 100 ms FIFO, B would wait ~25 s behind it.
    const aDoneBeforeB = downstream.succeeded((c) => c.tenant === 'a').length;
    const bStart = Date.now();
    await submitJobs({ baseUrl: stack.baseUrl, service: 'fair', key: key('b'), tenant: 'b', count: 50, clients: 8 });
    await until(() => downstream.succeeded((c) => c.tenant === 'b').length >= 50, 10_000, 'B finished');
    const bMs = Math.max(...downstream.succeeded((c) => c.tenant === 'b').map((c) => c.endedAt)) - bStart;
    const aBacklogAtB = 5000 - aDoneBeforeB;
    console.log(`fairness: A backlog when B arrived ${aBacklogAtB}, B's 50 done in ${bMs} ms`);
    expect(aBacklogAtB).toBeGreaterThan(4000);
    expect(bMs).toBeLessThanOrEqual(3000);

    await until(() => new Set(downstream.succeeded((c) => c.tenant === 'a').map((c) => c.tag)).size >= 5000, 150_000, 'A finished');
    const aTags = new Set(downstream.succeeded((c) => c.tenant === 'a').map((c) => c.tag));
    expect(aTags.size).toBe(5000);
    // Never more than the prefetch at the downstream.
    expect(Math.max(...downstream.calls.map((c) => c.concurrent))).toBeLessThanOrEqual(20);
  }, 180_000);

  it('maxConcurrency 5 for C: C never has more than 5 in flight while D is served; a tenant over half the slots is flagged noisy', async () => {
    const from = downstream.calls.length;
    let noisyD = false;
    let sampledC = 0;
    const sampler = setInterval(() => {
      void stack.dequeuer!.registry.getSingleMetricAsString('gw_tenant_inflight').then(async (text) => {
        const c = /gw_tenant_inflight\{[^}]*tenant="c"[^}]*\} (\d+)/.exec(text);
        if (c) sampledC = Math.max(sampledC, Number(c[1]));
        const noisy = await stack.dequeuer!.registry.getSingleMetricAsString('gw_tenant_noisy');
        if (/tenant="d"[^}]*\} 1/.test(noisy)) noisyD = true;
      });
    }, 100);
    try {
      await Promise.all([
        submitJobs({ baseUrl: stack.baseUrl, service: 'fair', key: key('c'), tenant: 'c', count: 300, clients: 8 }),
        publishBacklog({ url, topology: stack.topology, service: 'fair', tenant: 'd', count: 600 }),
      ]);
      await until(() => downstream.succeeded((c) => c.tenant === 'c').length >= 300 && downstream.succeeded((c) => c.tenant === 'd').length >= 600, 60_000, 'C and D finished');
    } finally {
      clearInterval(sampler);
    }
    const calls = downstream.calls.slice(from);
    const cCalls = calls.filter((c) => c.tenant === 'c');
    const dCalls = calls.filter((c) => c.tenant === 'd');
    const cMax = Math.max(...cCalls.map((c) => c.tenantConcurrent));
    const dMax = Math.max(...dCalls.map((c) => c.tenantConcurrent));
    const cSpan = [Math.min(...cCalls.map((c) => c.arrivedAt)), Math.max(...cCalls.map((c) => c.arrivedAt))] as const;
    const dDuringC = dCalls.filter((c) => c.arrivedAt > cSpan[0] && c.arrivedAt < cSpan[1]).length;
    console.log(`tenant caps: C max ${cMax} in flight (gauge max ${sampledC}), D max ${dMax}, D calls during C's span ${dDuringC}, D flagged noisy ${noisyD}`);
    expect(cMax).toBeLessThanOrEqual(5);
    expect(cMax).toBe(5);
    expect(sampledC).toBeLessThanOrEqual(5);
    // D is served alongside C, with the slots C may not take (default cap: 0.8 × 20 = 16).
    expect(dDuringC).toBeGreaterThan(100);
    expect(dMax).toBeGreaterThan(5);
    expect(dMax).toBeLessThanOrEqual(16);
    expect(noisyD).toBe(true);
  });
});
