import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { RedisDelayedBacklog } from '../../enqueuer/jobs/delayed-backlog.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('issue 12 item 1: the delayed-backlog count in Redis holds across enqueuer replicas', () => {
  const clients: Redis[] = [];
  const prefix = `test-delayed-${randomUUID()}:`;
  afterAll(async () => {
    const keys = await clients[0]?.keys(`${prefix}*`);
    if (keys?.length) await clients[0]!.del(...keys);
    await Promise.all(clients.map((c) => c.quit()));
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('three replicas reserving 40 delayed jobs each at once against a bound of 50 accept exactly 50; due jobs leave the count by themselves', async () => {
    let now = 1_000_000;
    const replicas = Array.from({ length: 3 }, () => {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      clients.push(redis);
      return new RedisDelayedBacklog(redis, prefix, () => now);
    });
    const limits = { maxPerService: 50, maxPerTenant: 1000 };
    const outcomes = await Promise.all(
      replicas.flatMap((r, ri) => Array.from({ length: 40 }, (_, i) => r.reserve('svc', `t${i % 4}`, `j${ri}-${i}`, now + (i < 20 ? 1000 : 3_600_000), limits).then(() => 'ok', (err: { code: string }) => err.code))),
    );
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(50);
    expect(outcomes.filter((o) => o === 'GW_ERR_DELAYED_BACKLOG_FULL')).toHaveLength(70);
    expect(await replicas[1]!.count('svc')).toBe(50);
    // After the short delays fell due, their places are free again without any decrement.
    now += 2000;
    const short = outcomes.filter((o, k) => o === 'ok' && k % 40 < 20).length;
    expect(await replicas[2]!.count('svc')).toBe(50 - short);
    await replicas[0]!.reserve('svc', 't9', 'late', now + 5000, limits);
    expect(await replicas[0]!.count('svc')).toBe(51 - short);
  });

  it('bounds one tenant below the service bound, and a released reservation frees its place', async () => {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    clients.push(redis);
    const backlog = new RedisDelayedBacklog(redis, `${prefix}t:`);
    const limits = { maxPerService: 100, maxPerTenant: 3 };
    for (let i = 0; i < 3; i++) await backlog.reserve('svc', 'a', `a${i}`, Date.now() + 60_000, limits);
    await expect(backlog.reserve('svc', 'a', 'a3', Date.now() + 60_000, limits)).rejects.toMatchObject({ code: 'GW_ERR_DELAYED_BACKLOG_FULL', status: 503, extra: { scope: 'tenant' } });
    await backlog.reserve('svc', 'b', 'b0', Date.now() + 60_000, limits);
    await backlog.release('svc', 'a', 'a0');
    await backlog.reserve('svc', 'a', 'a3', Date.now() + 60_000, limits);
    expect(await backlog.count('svc')).toBe(4);
  });
});
