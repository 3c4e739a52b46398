import { beforeEach, describe, expect, it } from 'vitest';
import { MemoryIdempotencyStore } from '../../enqueuer/jobs/idempotency-store.ts';
import { MemoryJobStore } from '../../enqueuer/jobs/memory-job-store.ts';
import type { JobEvent } from '../../shared/events.ts';

const MiB = 1024 * 1024;
const answer = (i: number, bytes: number) => ({ kind: 'sync' as const, jobId: `j${i}`, status: 200, headers: { 'content-type': 'application/octet-stream' }, bodyBase64: 'A'.repeat(bytes) });

describe('issue 12 item 2: the in-memory idempotency and job stores are bounded in bytes, evicting least recently used first', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('150 keys with 1 MiB answers stay within a 32 MiB bound; the newest and the recently used survive', async () => {
    const store = new MemoryIdempotencyStore({ maxKeys: 100_000, maxBytes: 32 * MiB });
    for (let i = 0; i < 150; i++) {
      await store.claim('t', `k${i}`, 'f', 60_000);
      await store.complete('t', `k${i}`, { fingerprint: 'f', answer: answer(i, MiB) }, 60_000);
      // k0 is read again and again: recently used, so never the one evicted.
      if (i % 10 === 0) expect(await store.get('t', 'k0')).toBeDefined();
    }
    expect(store.bytes).toBeLessThanOrEqual(32 * MiB);
    expect(store.bytes).toBeGreaterThan(16 * MiB);
    expect(store.size).toBeLessThan(32);
    expect(store.evictions).toBeGreaterThan(100);
    expect(await store.get('t', 'k149')).toBeDefined();
    expect(await store.get('t', 'k0')).toBeDefined();
    expect(await store.get('t', 'k1')).toBeUndefined();
    await store.release('t', 'k149');
    await store.sweep();
    expect(store.bytes).toBeLessThanOrEqual(32 * MiB - MiB);
  });

  it('finished jobs with large results stay within the job store\'s byte bound', async () => {
    const store = new MemoryJobStore({ maxJobs: 100_000, maxBytes: 16 * MiB, terminalTtlMs: 60_000, activeTtlMs: 60_000, scanBudget: 500 });
    for (let i = 0; i < 100; i++) {
      const base = { v: 1 as const, kind: 'job' as const, jobId: `j${i}`, tenant: 't', service: 's', attempt: 1, at: i, enqueuedAt: i };
      await store.apply({ ...base, state: 'queued' } satisfies JobEvent);
      await store.apply({ ...base, state: 'succeeded', result: { status: 200, headers: {}, bodyBase64: 'B'.repeat(MiB), bodyTruncated: false } } satisfies JobEvent);
    }
    expect(store.bytes).toBeLessThanOrEqual(16 * MiB);
    expect(store.size).toBeLessThan(17);
    expect(await store.get('t', 'j99')).toBeDefined();
    expect(await store.get('t', 'j0')).toBeUndefined();
  });
});
