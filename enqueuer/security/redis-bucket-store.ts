import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { MemoryBucketStore, resultOf, type BucketPolicy, type BucketStore, type TakeResult } from './token-bucket.ts';

/**
 * The token bucket as one atomic script, so every enqueuer replica shares the same buckets. Time
 * comes from the Redis server (`TIME`), not from each replica's clock. State: a hash with tokens
 * (`tk`) and last update in ms (`ts`), expiring once a bucket would be full anyway.
 */
export const TAKE_SCRIPT = `
local perMs = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'tk', 'ts')
local tokens = tonumber(s[1])
local ts = tonumber(s[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * perMs)
local allowed = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 end
redis.call('HSET', KEYS[1], 'tk', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / perMs) + 1000)
return {allowed, tostring(tokens)}
`;

type TakeCommand = (key: string, perMs: string, burst: string, cost: string) => Promise<[number, string]>;

/**
 * Buckets shared through Redis. When Redis does not answer within `commandTimeoutMs` the take falls
 * back to a bucket in this process (logged once per outage): limits degrade to per replica, they
 * never block traffic because Redis is down.
 */
export class RedisBucketStore implements BucketStore {
  #redis: Redis;
  #fallback = new MemoryBucketStore();
  #logger: Logger;
  #prefix: string;
  #degraded = false;
  #errorLogged = false;

  constructor(options: { url: string; keyPrefix: string; logger: Logger; commandTimeoutMs?: number }) {
    this.#logger = options.logger;
    this.#prefix = options.keyPrefix;
    this.#redis = new Redis(options.url, {
      commandTimeout: options.commandTimeoutMs ?? 250,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      lazyConnect: false,
    });
    // ioredis emits an error per reconnect attempt; one line per outage is enough.
    this.#redis.on('error', (err: Error) => {
      if (this.#errorLogged) return;
      this.#errorLogged = true;
      this.#logger.warn({ err: err.message }, 'rate-limit store: Redis error');
    });
    this.#redis.defineCommand('gwTakeTokens', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  }

  async take(key: string, policy: BucketPolicy, cost = 1): Promise<TakeResult> {
    try {
      const take = (this.#redis as unknown as { gwTakeTokens: TakeCommand }).gwTakeTokens;
      const [allowed, tokens] = await take.call(this.#redis, this.#prefix + key, String(policy.ratePerS / 1000), String(policy.burst), String(cost));
      this.#errorLogged = false;
      if (this.#degraded) {
        this.#degraded = false;
        this.#logger.info('rate-limit store: Redis answers again, buckets are shared');
      }
      return resultOf(allowed === 1, Number(tokens), policy, cost);
    } catch (err) {
      if (!this.#degraded) {
        this.#degraded = true;
        this.#logger.warn({ err: (err as Error).message }, 'rate-limit store: Redis unavailable, using per-replica buckets');
      }
      return this.#fallback.take(key, policy, cost);
    }
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
