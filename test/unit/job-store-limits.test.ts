import { beforeEach, describe, expect, it } from 'vitest';
import { BreakerBoard } from '../../enqueuer/events/breaker-board.ts';
import { MemoryIdempotencyStore, parseIdempotencyKey, requestFingerprint } from '../../enqueuer/jobs/idempotency-store.ts';
import { applyPatch, decodeCursor, encodeCursor, eventPatch, indexMember, rankOf, shouldApply } from '../../enqueuer/jobs/job-record.ts';
import { MemoryJobStore } from '../../enqueuer/jobs/memory-job-store.ts';
import { parseListQuery } from '../../enqueuer/routes/jobs.ts';
import type { JobEvent, JobState } from '../../shared/events.ts';

const ev = (jobId: string, state: JobState, attempt: number): JobEvent => ({ v: 1, kind: 'job', jobId, tenant: 't', service: 's', state, attempt, at: 1, enqueuedAt: 1 });

describe('job transitions, cursors and request parsing', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('ranks every transition of a job after the ones before it', () => {
    const order: Array<[JobState, number]> = [['queued', 1], ['running', 1], ['retrying', 1], ['running', 2], ['retrying', 2], ['running', 3], ['dead', 3]];
    const ranks = order.map(([s, a]) => rankOf(s, a));
    expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
    expect(new Set(ranks).size).toBe(ranks.length);
  });

  it('never leaves a terminal state except through a replay', () => {
    const done = applyPatch(undefined, eventPatch(ev('j', 'failed', 1)))!;
    expect(shouldApply(done, eventPatch(ev('j', 'running', 2)))).toBe(false);
    expect(shouldApply(done, eventPatch({ ...ev('j', 'running', 1), replay: true }))).toBe(true);
  });

  it('round-trips cursors and rejects forged ones with a 400', () => {
    const member = indexMember(1_700_000_000_000, 'abc-123');
    expect(decodeCursor(encodeCursor(member))).toBe(member);
    expect(() => decodeCursor('not-a-cursor')).toThrow(expect.objectContaining({ code: 'GW_ERR_BAD_REQUEST' }));
  });

  it('caps the list limit and rejects malformed list parameters', () => {
    expect(parseListQuery({ limit: '5000' }, 100).limit).toBe(100);
    expect(parseListQuery({}, 100).limit).toBe(20);
    for (const q of [{ limit: '0' }, { limit: '-1' }, { state: 'done' }, { service: ['a', 'b'] }, { service: '../x' }]) {
      expect(() => parseListQuery(q, 100)).toThrow(expect.objectContaining({ code: 'GW_ERR_BAD_REQUEST' }));
    }
  });

  it('accepts Idempotency-Key as a structured string or a bare token, and refuses anything else', () => {
    expect(parseIdempotencyKey('"abc"')).toBe('abc');
    expect(parseIdempotencyKey('abc-1')).toBe('abc-1');
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
    for (const bad of ['', '""', 'a b', 'x'.repeat(256), 'é']) expect(() => parseIdempotencyKey(bad)).toThrow(expect.objectContaining({ code: 'GW_ERR_BAD_REQUEST' }));
  });

  it('fingerprints method, service, path, query, body and mode', () => {
    const base = { mode: 'async', method: 'POST', service: 's', path: '/a', query: '', body: Buffer.from('x') };
    const fp = requestFingerprint(base);
    expect(requestFingerprint({ ...base })).toBe(fp);
    for (const change of [{ mode: 'sync' }, { method: 'PUT' }, { service: 't' }, { path: '/b' }, { query: 'q=1' }, { body: Buffer.from('y') }]) {
      expect(requestFingerprint({ ...base, ...change })).not.toBe(fp);
    }
  });

  it('sheds while a breaker is open and lets requests through once its reset time passed', () => {
    let now = 1_000;
    const board = new BreakerBoard(() => now);
    board.apply({ v: 1, kind: 'breaker', service: 's', state: 'open', retryAfterS: 3, at: 0 });
    expect(board.openRetryAfterS('s')).toBe(3);
    now += 2_500;
    expect(board.openRetryAfterS('s')).toBe(1);
    now += 600;
    expect(board.openRetryAfterS('s')).toBeUndefined();
    board.apply({ v: 1, kind: 'breaker', service: 's', state: 'closed', retryAfterS: 0, at: 0 });
    expect(board.openRetryAfterS('s')).toBeUndefined();
  });
});

describe('in-memory stores stay within their bounds', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('keeps at most its configured number of idempotency keys under a flood of 100,000 distinct keys', async () => {
    const store = new MemoryIdempotencyStore(1000);
    let won = 0;
    let maxSize = 0;
    for (let i = 0; i < 100_000; i++) {
      if ((await store.claim('t', `key-${i}`, 'fp', 60_000)) === undefined) won++;
      maxSize = Math.max(maxSize, store.size);
    }
    expect(won).toBe(100_000);
    expect(maxSize).toBe(1000);
    expect(store.size).toBe(1000);
    expect(store.evictions).toBe(99_000);
    // The most recent keys are the ones kept.
    expect(await store.get('t', 'key-99999')).toEqual({ fingerprint: 'fp' });
  });

  it('keeps at most its configured number of jobs, and a bounded index, under a flood of 100,000 distinct jobs', async () => {
    const store = new MemoryJobStore({ maxJobs: 1000, terminalTtlMs: 60_000, activeTtlMs: 60_000, scanBudget: 500 });
    let maxSize = 0;
    let maxIndexed = 0;
    for (let i = 0; i < 100_000; i++) {
      await store.apply({ ...ev(`job-${i}`, 'queued', 1), enqueuedAt: 1_000 + i });
      maxSize = Math.max(maxSize, store.size);
      maxIndexed = Math.max(maxIndexed, store.indexed);
    }
    expect(maxSize).toBe(1000);
    // The lazily cleaned index is compacted once it holds twice the bound (+ slack).
    expect(maxIndexed).toBeLessThanOrEqual(2 * 1000 + 1024);
    expect(store.evictions).toBe(99_000);
    const page = await store.list('t', { limit: 3 });
    expect(page.jobs.map((j) => j.id)).toEqual(['job-99999', 'job-99998', 'job-99997']);
  });

  it('drops finished jobs after their TTL', async () => {
    let now = 0;
    const store = new MemoryJobStore({ maxJobs: 100, terminalTtlMs: 1000, activeTtlMs: 10_000, scanBudget: 500 }, () => now);
    await store.apply(ev('done', 'succeeded', 1));
    await store.apply(ev('active', 'running', 1));
    now = 1500;
    expect(await store.sweep()).toBe(1);
    expect(await store.get('t', 'done')).toBeUndefined();
    expect(await store.get('t', 'active')).toBeDefined();
  });
});
