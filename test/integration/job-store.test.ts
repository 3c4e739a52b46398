import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MemoryIdempotencyStore, type IdempotencyStore } from '../../enqueuer/jobs/idempotency-store.ts';
import { decodeCursor } from '../../enqueuer/jobs/job-record.ts';
import type { JobStore, JobStoreLimits } from '../../enqueuer/jobs/job-store.ts';
import { MemoryJobStore } from '../../enqueuer/jobs/memory-job-store.ts';
import { RedisIdempotencyStore } from '../../enqueuer/jobs/redis-idempotency-store.ts';
import { RedisJobStore } from '../../enqueuer/jobs/redis-job-store.ts';
import type { JobEvent, JobState } from '../../shared/events.ts';

const LIMITS: JobStoreLimits = { maxJobs: 10_000, terminalTtlMs: 60_000, activeTtlMs: 120_000, scanBudget: 500 };

interface Stores {
  jobs: JobStore;
  idem: IdempotencyStore;
  cleanup: () => Promise<void>;
}

const backends: Array<[string, () => Promise<Stores>]> = [
  ['memory', async () => ({ jobs: new MemoryJobStore(LIMITS), idem: new MemoryIdempotencyStore(10_000), cleanup: async () => {} })],
  ['redis', async () => {
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const prefix = `t-store-${randomBytes(3).toString('hex')}:`;
    return {
      jobs: new RedisJobStore(redis, prefix, LIMITS),
      idem: new RedisIdempotencyStore(redis, prefix),
      cleanup: async () => {
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
          cursor = next;
          if (keys.length) await redis.del(...keys);
        } while (cursor !== '0');
        await redis.quit();
      },
    };
  }],
];

function ev(jobId: string, state: JobState, attempt: number, extra: Partial<JobEvent> = {}): JobEvent {
  return { v: 1, kind: 'job', jobId, tenant: 't1', service: 'echo', state, attempt, at: Date.now(), enqueuedAt: 1_700_000_000_000, ...extra };
}

describe.each(backends)('job store behaviour (%s)', (_name, make) => {
  let s: Stores;
  beforeAll(async () => {
    s = await make();
  });
  afterAll(async () => {
    await s?.cleanup();
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('applies transitions monotonically: older, duplicate and post-terminal events change nothing', async () => {
    const id = randomUUID();
    await s.jobs.apply(ev(id, 'queued', 1));
    await s.jobs.apply(ev(id, 'running', 1));
    await s.jobs.apply(ev(id, 'retrying', 1, { error: { code: 'http_status', message: 'downstream answered 503', status: 503 }, nextAttemptAt: 5 }));
    expect(await s.jobs.apply(ev(id, 'running', 1))).toMatchObject({ state: 'retrying', attempt: 1, nextAttemptAt: 5 });
    await s.jobs.apply(ev(id, 'running', 2));
    const done = await s.jobs.apply(ev(id, 'succeeded', 2, { result: { status: 200, headers: {}, bodyBase64: 'b2s=', bodyTruncated: false } }));
    expect(done).toMatchObject({ state: 'succeeded', attempt: 2, result: { status: 200 }, error: { status: 503 }, createdAt: 1_700_000_000_000 });
    expect(done.nextAttemptAt).toBeUndefined();
    expect(done.finishedAt).toBeTypeOf('number');
    await s.jobs.apply(ev(id, 'running', 3));
    await s.jobs.apply(ev(id, 'queued', 1));
    expect(await s.jobs.get('t1', id)).toMatchObject({ state: 'succeeded', attempt: 2 });
    expect(await s.jobs.apply(ev(id, 'running', 1, { replay: true }))).toMatchObject({ state: 'running', attempt: 1 });
  });

  it('records a job first seen through a later event, and a late queued does not move it back', async () => {
    const id = randomUUID();
    await s.jobs.apply(ev(id, 'running', 1));
    expect(await s.jobs.apply(ev(id, 'queued', 1))).toMatchObject({ state: 'running', startedAt: expect.any(Number) });
  });

  it('scopes jobs by tenant: another tenant neither reads nor lists them', async () => {
    const id = randomUUID();
    await s.jobs.apply(ev(id, 'queued', 1, { tenant: 'owner' }));
    expect(await s.jobs.get('owner', id)).toBeDefined();
    expect(await s.jobs.get('intruder', id)).toBeUndefined();
    expect((await s.jobs.list('intruder', { limit: 100 })).jobs).toHaveLength(0);
  });

  it('lists newest first and pages through every job exactly once, with service and state filters', async () => {
    const tenant = `list-${randomUUID()}`;
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const id = randomUUID();
      ids.push(id);
      await s.jobs.apply(ev(id, 'queued', 1, { tenant, enqueuedAt: 1_700_000_000_000 + Math.floor(i / 3), service: i % 5 === 0 ? 'other' : 'echo' }));
      if (i % 2 === 0) await s.jobs.apply(ev(id, 'succeeded', 1, { tenant, service: i % 5 === 0 ? 'other' : 'echo' }));
    }
    const seen: string[] = [];
    const created: number[] = [];
    let after: string | undefined;
    for (let page = 0; page < 20; page++) {
      const p = await s.jobs.list(tenant, { limit: 7, ...(after ? { after } : {}) });
      seen.push(...p.jobs.map((j) => j.id));
      created.push(...p.jobs.map((j) => j.createdAt));
      if (!p.next) break;
      after = decodeCursor(p.next);
    }
    expect(seen).toHaveLength(50);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect([...created].sort((a, b) => b - a)).toEqual(created);
    const other = await s.jobs.list(tenant, { limit: 100, service: 'other' });
    expect(other.jobs).toHaveLength(10);
    const succeededEcho = await s.jobs.list(tenant, { limit: 100, service: 'echo', state: 'succeeded' });
    expect(succeededEcho.jobs.map((j) => j.state)).toEqual(Array(20).fill('succeeded'));
  });

  it('lets exactly one of 20 concurrent claims of a key win, stores its answer, and releases on failure', async () => {
    const key = randomUUID();
    const claims = await Promise.all(Array.from({ length: 20 }, () => s.idem.claim('t1', key, 'fp', 10_000)));
    expect(claims.filter((c) => c === undefined)).toHaveLength(1);
    expect(claims.filter((c) => c?.fingerprint === 'fp' && c.answer === undefined)).toHaveLength(19);
    await s.idem.complete('t1', key, { fingerprint: 'fp', answer: { kind: 'async', jobId: 'j-1' } }, 10_000);
    expect(await s.idem.claim('t1', key, 'fp', 10_000)).toEqual({ fingerprint: 'fp', answer: { kind: 'async', jobId: 'j-1' } });
    expect(await s.idem.claim('t2', key, 'fp', 10_000)).toBeUndefined();
    const released = randomUUID();
    await s.idem.claim('t1', released, 'fp', 10_000);
    await s.idem.release('t1', released);
    expect(await s.idem.claim('t1', released, 'fp', 10_000)).toBeUndefined();
  });

  it('frees a key after its TTL', async () => {
    const key = randomUUID();
    await s.idem.complete('t1', key, { fingerprint: 'fp', answer: { kind: 'async', jobId: 'j-2' } }, 200);
    expect(await s.idem.get('t1', key)).toBeDefined();
    await new Promise((r) => setTimeout(r, 300));
    expect(await s.idem.claim('t1', key, 'other', 10_000)).toBeUndefined();
  });
});
