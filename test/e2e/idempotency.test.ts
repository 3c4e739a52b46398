import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Enqueuer } from '../../enqueuer/enqueuer.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Answer {
  status: number;
  jobId: string | undefined;
  code?: string;
}

async function send(baseUrl: string, key: string, body: string, prefer = 'respond-async', path = '/echo'): Promise<Answer> {
  const res = await fetch(`${baseUrl}/v1/services/echo${path}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'text/plain', prefer, 'idempotency-key': key },
  });
  const text = await res.text();
  const parsed = res.headers.get('content-type')?.includes('json') ? (JSON.parse(text) as { id?: string; code?: string }) : {};
  return { status: res.status, jobId: parsed.id ?? res.headers.get('x-gw-job-id') ?? undefined, ...(parsed.code ? { code: parsed.code } : {}) };
}

/** Deletes every Redis key under a test's prefix. */
async function deleteRedisPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
}

describe('Idempotency-Key with the in-memory store', () => {
  const url = brokerUrl();
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('idempotency memory'), enqueuerEnv: { IDEMPOTENCY_TTL_MS: '2000' } });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('publishes exactly one job for 50 concurrent POSTs with one key, and all 50 answers carry its job id', async () => {
    const key = randomUUID();
    const callsBefore = stack.demo.calls.length;
    const answers = await Promise.all(Array.from({ length: 50 }, () => send(stack.baseUrl, key, 'same body')));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(202));
    const ids = new Set(answers.map((a) => a.jobId));
    expect(ids.size).toBe(1);
    const jobId = [...ids][0]!;
    await until(async () => {
      const job = (await (await fetch(`${stack.baseUrl}/v1/jobs/${jobId}`)).json()) as { state: string };
      return job.state === 'succeeded' ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(stack.demo.callsByKey().get(jobId)).toBe(1);
    expect(stack.demo.calls.length - callsBefore).toBe(1);
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/gw_jobs_accepted_total\{service="echo"[^}]*\} 1\n/);
  });

  it('answers 422 for the same key with another body, and frees the key after its TTL', async () => {
    const key = randomUUID();
    const first = await send(stack.baseUrl, key, 'one');
    expect(first.status).toBe(202);
    const reused = await send(stack.baseUrl, key, 'two');
    expect(reused).toMatchObject({ status: 422, code: 'GW_ERR_IDEMPOTENCY_KEY_REUSED' });
    await new Promise((r) => setTimeout(r, 2300));
    const later = await send(stack.baseUrl, key, 'two');
    expect(later.status).toBe(202);
    expect(later.jobId).not.toBe(first.jobId);
  });

  it('replays the stored response of a sync request without calling the downstream again', async () => {
    const key = randomUUID();
    const first = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'sync-once', headers: { 'content-type': 'text/plain', 'idempotency-key': key } });
    expect(first.status).toBe(200);
    const jobId = first.headers.get('x-gw-job-id')!;
    const again = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'sync-once', headers: { 'content-type': 'text/plain', 'idempotency-key': key } });
    expect(again.status).toBe(200);
    expect(again.headers.get('content-type')).toBe('text/plain');
    expect(await again.text()).toBe('sync-once');
    expect(again.headers.get('x-gw-job-id')).toBe(jobId);
    expect(stack.demo.callsByKey().get(jobId)).toBe(1);
  });
});

describe('Idempotency-Key shared by two enqueuers through Redis', () => {
  const url = brokerUrl();
  const redisPrefix = `t-idem-${randomBytes(3).toString('hex')}:`;
  let stack: Stack;
  let second: Enqueuer;
  let redis: Redis;

  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('idempotency redis'),
      enqueuerEnv: { REDIS_URL, REDIS_KEY_PREFIX: redisPrefix },
    });
    second = new Enqueuer(stack.enqueuerConfig, { logger: stack.logs.logger() });
    await second.start();
    await second.waitUntilReady(30_000);
  });
  afterAll(async () => {
    await second?.stop().catch(() => {});
    await stack?.stop(url);
    await deleteRedisPrefix(redis, redisPrefix);
    await redis.quit();
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('recognises a duplicate sent to the second enqueuer and publishes nothing for it', async () => {
    const key = randomUUID();
    const secondUrl = `http://127.0.0.1:${second.port}`;
    const first = await send(stack.baseUrl, key, 'shared');
    expect(first.status).toBe(202);
    const dup = await send(secondUrl, key, 'shared');
    expect(dup.status).toBe(202);
    expect(dup.jobId).toBe(first.jobId);
    const other = await send(secondUrl, key, 'different');
    expect(other).toMatchObject({ status: 422, code: 'GW_ERR_IDEMPOTENCY_KEY_REUSED' });
    const job = await until(async () => {
      const j = (await (await fetch(`${secondUrl}/v1/jobs/${first.jobId}`)).json()) as { state: string };
      return j.state === 'succeeded' ? j : undefined;
    });
    expect(job.state).toBe('succeeded');
    expect(stack.demo.callsByKey().get(first.jobId!)).toBe(1);
    const secondMetrics = await second.registry.getSingleMetricAsString('gw_jobs_accepted_total');
    // The series exists from start-up at 0 (so alerts see its first increase); it must still be 0.
    expect(secondMetrics).toMatch(/gw_jobs_accepted_total\{service="echo"[^}]*\} 0$/m);
  });

  it('publishes one job for 50 concurrent POSTs with one key split across both enqueuers', async () => {
    const key = randomUUID();
    const urls = [stack.baseUrl, `http://127.0.0.1:${second.port}`];
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => send(urls[i % 2]!, key, 'split')));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(202));
    expect(new Set(answers.map((a) => a.jobId)).size).toBe(1);
    const jobId = answers[0]!.jobId!;
    await until(() => (stack.demo.callsByKey().get(jobId) ? true : undefined));
    await new Promise((r) => setTimeout(r, 300));
    expect(stack.demo.callsByKey().get(jobId)).toBe(1);
  });
});
