import type { Redis } from 'ioredis';
import { GatewayError } from '../../shared/errors.ts';
import type { JobEvent } from '../../shared/events.ts';
import { encodeCursor, eventPatch, indexMember, matchesQuery, type JobRecord, type ListPage, type ListQuery } from './job-record.ts';
import type { JobStore, JobStoreLimits } from './job-store.ts';

/**
 * Applies one transition atomically: the same guard as `shouldApply` (never out of a terminal state
 * unless replayed, never back to an earlier rank), then the patch, the TTL, and on creation the list
 * indexes. Returns the job afterwards. Field values are JSON.
 * KEYS: job hash, tenant index, tenant+service index.
 * ARGV: rank, terminal, replay (its updatedAt, or 0 when not a replay), ttlMs, member, nSet, set pairs…, nIfAbsent, pairs…, nDel, fields…
 */
const APPLY_LUA = `
local cur = redis.call('HMGET', KEYS[1], 'rank', 'terminal', 'updatedAt')
local exists = cur[1] ~= false
local apply = true
if exists then
  if cur[2] == 'true' then
    if ARGV[3] == '0' or tonumber(cur[3]) > tonumber(ARGV[3]) then apply = false end
  elseif tonumber(cur[1]) >= tonumber(ARGV[1]) then apply = false end
end
if apply then
  local i = 6
  local n = tonumber(ARGV[i]); i = i + 1
  local args = {}
  for j = 1, n * 2 do args[#args + 1] = ARGV[i]; i = i + 1 end
  redis.call('HSET', KEYS[1], unpack(args))
  n = tonumber(ARGV[i]); i = i + 1
  for j = 1, n do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
  n = tonumber(ARGV[i]); i = i + 1
  for j = 1, n do redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1 end
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  if not exists then
    redis.call('ZADD', KEYS[2], 0, ARGV[5])
    redis.call('ZADD', KEYS[3], 0, ARGV[5])
  end
end
return redis.call('HGETALL', KEYS[1])
`;

/** Sets KEYS[1] to ARGV[1] unless it already holds a larger offset (replicas record the same key). */
const MAX_OFFSET_LUA = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`;

type ApplyCommand = (keys: [string, string, string], ...args: string[]) => Promise<string[]>;

/** Redis failures surface as a typed 503 rather than an opaque 500. */
export async function storeCall<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', 'the job store (Redis) did not answer', { retryAfterS: 1, cause: err });
  }
}

/**
 * Job store shared by several enqueuer replicas. A job is a hash (one JSON value per field) with a
 * TTL; each tenant has a lexicographic sorted-set index (`ZREVRANGEBYLEX` pages newest first) and
 * one per service. Index members of expired jobs are removed when a list meets them and by `sweep`.
 */
export class RedisJobStore implements JobStore {
  readonly kind = 'redis';
  #redis: Redis;
  #prefix: string;
  #limits: JobStoreLimits;
  #apply: ApplyCommand;

  /** `keyPrefix` isolates deployments (and tests) sharing one Redis. */
  constructor(redis: Redis, keyPrefix: string, limits: JobStoreLimits) {
    this.#redis = redis;
    this.#prefix = keyPrefix;
    this.#limits = limits;
    if (!('gwApplyJob' in redis)) redis.defineCommand('gwApplyJob', { numberOfKeys: 3, lua: APPLY_LUA });
    const cmd = (redis as unknown as { gwApplyJob: (...args: string[]) => Promise<string[]> }).gwApplyJob.bind(redis);
    this.#apply = (keys, ...args) => cmd(...keys, ...args);
    if (!('gwMaxOffset' in redis)) redis.defineCommand('gwMaxOffset', { numberOfKeys: 1, lua: MAX_OFFSET_LUA });
  }

  async appliedOffset(): Promise<number | undefined> {
    const v = await storeCall(this.#redis.get(`${this.#prefix}events:offset`));
    return v === null ? undefined : Number(v);
  }

  async recordOffset(offset: number): Promise<void> {
    await storeCall((this.#redis as unknown as { gwMaxOffset: (key: string, offset: string) => Promise<number> }).gwMaxOffset(`${this.#prefix}events:offset`, String(offset)));
  }

  #jobKey(tenant: string, id: string): string {
    return `${this.#prefix}job:${encodeURIComponent(tenant)}:${id}`;
  }
  #indexKey(tenant: string, service?: string): string {
    const base = `${this.#prefix}idx:${encodeURIComponent(tenant)}`;
    return service === undefined ? base : `${base}:svc:${service}`;
  }

  async apply(event: JobEvent): Promise<JobRecord> {
    const patch = eventPatch(event);
    const args: string[] = [
      String(patch.rank), patch.terminal ? '1' : '0', patch.replay ? String(patch.set.updatedAt ?? 0) : '0',
      String(patch.terminal ? this.#limits.terminalTtlMs : this.#limits.activeTtlMs),
      indexMember(patch.setIfAbsent.createdAt!, event.jobId),
    ];
    const set = Object.entries(patch.set);
    args.push(String(set.length));
    for (const [k, v] of set) args.push(k, JSON.stringify(v));
    const ifAbsent = Object.entries(patch.setIfAbsent);
    args.push(String(ifAbsent.length));
    for (const [k, v] of ifAbsent) args.push(k, JSON.stringify(v));
    args.push(String(patch.del.length), ...patch.del);
    const flat = await storeCall(this.#apply([this.#jobKey(event.tenant, event.jobId), this.#indexKey(event.tenant), this.#indexKey(event.tenant, event.service)], ...args));
    return parseFlat(flat)!;
  }

  async get(tenant: string, id: string): Promise<JobRecord | undefined> {
    return parseHash(await storeCall(this.#redis.hgetall(this.#jobKey(tenant, id))));
  }

  async list(tenant: string, q: ListQuery): Promise<ListPage> {
    const indexKey = this.#indexKey(tenant, q.service);
    const jobs: JobRecord[] = [];
    let scanned = 0;
    let max = q.after === undefined ? '+' : `(${q.after}`;
    let last: string | undefined;
    let more = true;
    while (more && jobs.length < q.limit && scanned < this.#limits.scanBudget) {
      const batch = Math.min(this.#limits.scanBudget - scanned, Math.max(2 * (q.limit - jobs.length), 20));
      const members = await storeCall(this.#redis.zrevrangebylex(indexKey, max, '-', 'LIMIT', 0, batch));
      more = members.length === batch;
      const pipeline = this.#redis.pipeline();
      for (const m of members) pipeline.hgetall(this.#jobKey(tenant, m.slice(16)));
      const results = (await storeCall(pipeline.exec())) ?? [];
      const gone: string[] = [];
      for (let i = 0; i < members.length; i++) {
        if (jobs.length >= q.limit) {
          more = true;
          break;
        }
        const member = members[i]!;
        last = member;
        scanned++;
        const [err, hash] = results[i] ?? [];
        if (err) throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', 'the job store (Redis) did not answer', { retryAfterS: 1, cause: err });
        const record = parseHash(hash as Record<string, string>);
        if (!record) gone.push(member);
        else if (matchesQuery(record, q)) jobs.push(record);
      }
      if (gone.length) await storeCall(this.#redis.zrem(indexKey, ...gone));
      if (last !== undefined) max = `(${last}`;
    }
    return more && last !== undefined ? { jobs, next: encodeCursor(last) } : { jobs };
  }

  /** Trims index members older than the longest TTL (their jobs expired with it). */
  async sweep(): Promise<number> {
    const horizon = indexMember(Date.now() - Math.max(this.#limits.terminalTtlMs, this.#limits.activeTtlMs), '');
    let removed = 0;
    let cursor = '0';
    do {
      const [next, keys] = await storeCall(this.#redis.scan(cursor, 'MATCH', `${this.#prefix}idx:*`, 'COUNT', 200));
      cursor = next;
      for (const key of keys) removed += await storeCall(this.#redis.zremrangebylex(key, '-', `(${horizon}`));
    } while (cursor !== '0');
    return removed;
  }

  async close(): Promise<void> {}
}

function parseHash(hash: Record<string, string> | undefined): JobRecord | undefined {
  if (!hash || !hash.id) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(hash)) out[k] = JSON.parse(v);
  return out as unknown as JobRecord;
}

function parseFlat(flat: string[]): JobRecord | undefined {
  const hash: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) hash[flat[i]!] = flat[i + 1]!;
  return parseHash(hash);
}
