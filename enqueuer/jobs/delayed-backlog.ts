import type { Redis } from 'ioredis';
import { GatewayError } from '../../shared/errors.ts';
import { storeCall } from './redis-job-store.ts';

/** Bounds of the delayed backlog of one service. */
export interface DelayedLimits {
  /** Delayed jobs of the service not yet due, over every tenant and every replica. */
  maxPerService: number;
  /** Delayed jobs of one tenant for the service not yet due. */
  maxPerTenant: number;
}

/**
 * Delayed jobs accepted and not yet due, counted where every enqueuer replica sees the same count
 * (docs/adr/1200-delayed-backlog-bound.md): each reservation is a member scored by its due time,
 * so it leaves the count by itself when the job reaches its work queue; nothing has to decrement it.
 */
export interface DelayedBacklog {
  /**
   * Reserves a place for `jobId` (due at `dueAt`) or throws 503 `GW_ERR_DELAYED_BACKLOG_FULL` with
   * `Retry-After` = seconds until the earliest reservation of the full scope falls due.
   */
  reserve(service: string, tenant: string, jobId: string, dueAt: number, limits: DelayedLimits): Promise<void>;
  /** Gives a reservation back (the publish failed, or the job was cancelled). */
  release(service: string, tenant: string, jobId: string): Promise<void>;
  /** Delayed jobs of `service` not yet due (the `gw_delayed_jobs` gauge). */
  count(service: string): Promise<number>;
}

/** Longest `Retry-After` a full backlog answers with (s): a slot may free earlier (cancel, replay). */
export const DELAYED_RETRY_AFTER_MAX_S = 3600;

function full(scope: 'service' | 'tenant', limit: number, earliestDue: number, now: number): GatewayError {
  const retryAfterS = Math.min(DELAYED_RETRY_AFTER_MAX_S, Math.max(1, Math.ceil((earliestDue - now) / 1000)));
  const who = scope === 'service' ? 'this service' : 'this tenant for this service';
  return new GatewayError('GW_ERR_DELAYED_BACKLOG_FULL', `${who} has ${limit} delayed jobs not yet due`, { retryAfterS, extra: { scope, limit } });
}

/** One replica's count (in-memory job store: one enqueuer). */
export class MemoryDelayedBacklog implements DelayedBacklog {
  /** `service` and `service\0tenant` → jobId → due time. */
  #scopes = new Map<string, Map<string, number>>();
  #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  async reserve(service: string, tenant: string, jobId: string, dueAt: number, limits: DelayedLimits): Promise<void> {
    const now = this.#now();
    const svc = this.#scope(service, now);
    const mine = this.#scope(`${service}\u0000${tenant}`, now);
    if (mine.size >= limits.maxPerTenant) throw full('tenant', limits.maxPerTenant, earliest(mine), now);
    if (svc.size >= limits.maxPerService) throw full('service', limits.maxPerService, earliest(svc), now);
    svc.set(jobId, dueAt);
    mine.set(jobId, dueAt);
  }

  async release(service: string, tenant: string, jobId: string): Promise<void> {
    this.#scopes.get(service)?.delete(jobId);
    this.#scopes.get(`${service}\u0000${tenant}`)?.delete(jobId);
  }

  async count(service: string): Promise<number> {
    return this.#scope(service, this.#now()).size;
  }

  /** The scope's reservations with the due ones dropped (O(n), n ≤ the limit). */
  #scope(key: string, now: number): Map<string, number> {
    let m = this.#scopes.get(key);
    if (!m) this.#scopes.set(key, (m = new Map()));
    for (const [id, due] of m) if (due <= now) m.delete(id);
    return m;
  }
}

function earliest(m: Map<string, number>): number {
  let min = Infinity;
  for (const due of m.values()) if (due < min) min = due;
  return min;
}

// KEYS: service zset, tenant zset. ARGV: now, due, jobId, maxPerService, maxPerTenant.
// Returns {0, n} on success, {1 | 2, earliestDue} when the service (1) or tenant (2) scope is full.
const RESERVE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return {2, redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]}
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[4]) then
  return {1, redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
local ttl = tonumber(ARGV[2]) - tonumber(ARGV[1]) + 60000
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return {0, n + 1}
`;

/**
 * The count shared by every replica, in Redis: two sorted sets per service (the service's and the
 * tenant's), scored by due time; one Lua script drops the due members, checks both bounds and adds
 * the job atomically, so concurrent reservations on any number of replicas never overshoot.
 * Keys share a `{service}` hash tag (one cluster slot) and expire a minute after their last due time.
 */
export class RedisDelayedBacklog implements DelayedBacklog {
  #redis: Redis;
  #prefix: string;
  #now: () => number;

  constructor(redis: Redis, keyPrefix: string, now: () => number = Date.now) {
    this.#redis = redis;
    this.#prefix = keyPrefix;
    this.#now = now;
  }

  #keys(service: string, tenant: string): [string, string] {
    const base = `${this.#prefix}delayed:{${service}}`;
    return [base, `${base}:${encodeURIComponent(tenant)}`];
  }

  async reserve(service: string, tenant: string, jobId: string, dueAt: number, limits: DelayedLimits): Promise<void> {
    const now = this.#now();
    const [svcKey, tenantKey] = this.#keys(service, tenant);
    const [kind, value] = (await storeCall(this.#redis.eval(RESERVE, 2, svcKey, tenantKey, now, dueAt, jobId, limits.maxPerService, limits.maxPerTenant))) as [number, string | number];
    if (kind === 2) throw full('tenant', limits.maxPerTenant, Number(value), now);
    if (kind === 1) throw full('service', limits.maxPerService, Number(value), now);
  }

  async release(service: string, tenant: string, jobId: string): Promise<void> {
    const [svcKey, tenantKey] = this.#keys(service, tenant);
    await storeCall(this.#redis.multi().zrem(svcKey, jobId).zrem(tenantKey, jobId).exec());
  }

  async count(service: string): Promise<number> {
    const [svcKey] = this.#keys(service, '');
    return storeCall(this.#redis.zcount(svcKey, `(${this.#now()}`, '+inf'));
  }
}
