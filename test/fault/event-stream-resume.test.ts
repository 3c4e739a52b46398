import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadEnqueuerConfig } from '../../enqueuer/config.ts';
import { Enqueuer } from '../../enqueuer/enqueuer.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { until } from '../support/jobs.ts';
import { LogSink, Stack } from '../support/stack.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const JOBS = 1000;

/**
 * Issue 11: a replica that missed job transitions (its broker connections cut, or the process
 * restarted) shows every job in its true final state once it is back, because it reads the events
 * stream by offset: stale = 0, with the memory store and with the Redis store.
 */
describe('events stream: no stale job status after a cut connection or a restart', () => {
  const url = brokerUrl();
  const prefix = uniquePrefix('event stream resume');
  const redisPrefixes = [1, 2].map((n) => `${prefix}-${randomUUID().slice(0, 8)}-${n}:`);
  let stack: Stack;
  let proxy: FaultProxy;
  const replicas: Enqueuer[] = [];

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix, startDequeuer: false, services: { echo: { url: '{DEMO}' } } });
    proxy = await startFaultProxy({ targetHost: new URL(url).hostname, targetPort: Number(new URL(url).port || 5672) });
  });
  afterAll(async () => {
    for (const r of replicas) await r.stop().catch(() => {});
    await proxy?.close();
    await stack?.stop(url);
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    for (const redisPrefix of redisPrefixes) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 500);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
    }
    await redis.quit();
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  /** A second enqueuer replica on the proxy (memory store) or with the Redis store. */
  async function replica(o: { viaProxy: boolean; redis?: string; logs?: LogSink }): Promise<Enqueuer> {
    const c = stack.enqueuerConfig;
    const config = loadEnqueuerConfig({
      RABBITMQ_URL: o.viaProxy ? proxy.url(url) : url,
      GW_PREFIX: prefix,
      SERVICES_JSON: JSON.stringify({ services: c.services }),
      PORT: '0', HOST: '127.0.0.1', HEARTBEAT_S: '5', DRAIN_DELAY_MS: '0',
      ...(o.redis ? { REDIS_URL, REDIS_KEY_PREFIX: o.redis } : {}),
    });
    const r = new Enqueuer(config, { logger: (o.logs ?? new LogSink()).logger() });
    replicas.push(r);
    await r.start();
    await r.waitUntilReady(30_000);
    return r;
  }

  async function accept(n: number, path = '/echo'): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, n - i) }, async () => {
        const res = await fetch(`${stack.baseUrl}/v1/services/echo${path}`, { method: 'POST', body: 'x', headers: { prefer: 'respond-async', 'content-type': 'text/plain' } });
        expect(res.status).toBe(202);
        return ((await res.json()) as { id: string }).id;
      }));
      ids.push(...batch);
    }
    return ids;
  }

  async function stale(r: Enqueuer, ids: readonly string[]): Promise<number> {
    let n = 0;
    for (const id of ids) if ((await r.stores.jobs.get('default', id))?.state !== 'succeeded') n++;
    return n;
  }

  async function caughtUp(r: Enqueuer): Promise<void> {
    await until(() => r.readiness().checks.events === true, 30_000, 'replica caught up with the events stream');
  }

  it(`shows ${JOBS} jobs that finished while its broker connections were cut in their final state (memory and Redis store): stale = 0`, async () => {
    const memory = await replica({ viaProxy: true });
    const redis = await replica({ viaProxy: true, redis: redisPrefixes[0] });
    await Promise.all([caughtUp(memory), caughtUp(redis)]);
    const ids = await accept(JOBS);
    // Both replicas heard every job queued before the cut.
    const queued = async (r: Enqueuer): Promise<boolean> => (await Promise.all(ids.map((id) => r.stores.jobs.get('default', id)))).every((j) => j?.state === 'queued');
    await until(async () => ((await queued(memory)) && (await queued(redis))) || undefined, 20_000, 'queued on both replicas');
    const reconnectsBefore = memory.events.connection.reconnects;
    await proxy.setMode('down');
    await until(() => memory.events.connection.state !== 'connected' && redis.events.connection.state !== 'connected' || undefined, 20_000, 'replicas cut off');
    await stack.startDequeuer();
    await until(async () => (await stale(stack.enqueuer, ids)) === 0 || undefined, 60_000, 'all jobs succeeded (seen by the connected replica)');
    expect(await stale(memory, ids)).toBe(JOBS);
    await proxy.setMode('pass');
    await until(async () => (await stale(memory, ids)) === 0 && (await stale(redis, ids)) === 0 || undefined, 60_000, 'replicas show the final states');
    expect(memory.events.connection.reconnects).toBeGreaterThan(reconnectsBefore);
    expect(await stale(memory, ids)).toBe(0);
    expect(await stale(redis, ids)).toBe(0);
    await stack.stopDequeuer();
    await Promise.all([memory.stop(), redis.stop()]);
  });

  it(`shows ${JOBS} jobs that finished while it was restarted in their final state: a memory replica rebuilds from the stream, a Redis one resumes after its recorded offset`, async () => {
    const first = await replica({ viaProxy: false, redis: redisPrefixes[1] });
    await caughtUp(first);
    const ids = await accept(JOBS, '/delay/5');
    await stack.startDequeuer();
    // Stopped mid-run: some jobs finished, not all.
    await until(async () => (await stale(first, ids.slice(0, 100))) < 100 || undefined, 30_000, 'first jobs done');
    await first.stop();
    expect(await stale(stack.enqueuer, ids)).toBeGreaterThan(0);
    await until(async () => (await stale(stack.enqueuer, ids)) === 0 || undefined, 60_000, 'all jobs succeeded');
    const logs = new LogSink();
    const [resumed, rebuilt] = await Promise.all([replica({ viaProxy: false, redis: redisPrefixes[1], logs }), replica({ viaProxy: false })]);
    await Promise.all([caughtUp(resumed), caughtUp(rebuilt)]);
    expect(await stale(resumed, ids)).toBe(0);
    expect(await stale(rebuilt, ids)).toBe(0);
    const resume = logs.lines.find((l) => l.msg === 'resuming the events stream after the recorded offset');
    expect(resume?.appliedOffset).toEqual(expect.any(Number));
    await stack.stopDequeuer();
  });
});
