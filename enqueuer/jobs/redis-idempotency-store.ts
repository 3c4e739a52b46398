import type { Redis } from 'ioredis';
import type { IdempotencyEntry, IdempotencyStore } from './idempotency-store.ts';
import { storeCall } from './redis-job-store.ts';

/**
 * Idempotency keys in Redis, shared by enqueuer replicas: the claim is `SET NX PX`, so exactly one
 * of any number of concurrent claims (on any replica) wins; Redis expiry is the sweeper.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  #redis: Redis;
  #prefix: string;

  constructor(redis: Redis, keyPrefix: string) {
    this.#redis = redis;
    this.#prefix = keyPrefix;
  }

  #key(tenant: string, key: string): string {
    return `${this.#prefix}idem:${encodeURIComponent(tenant)}:${encodeURIComponent(key)}`;
  }

  async claim(tenant: string, key: string, fingerprint: string, ttlMs: number): Promise<IdempotencyEntry | undefined> {
    const k = this.#key(tenant, key);
    const value = JSON.stringify({ fingerprint } satisfies IdempotencyEntry);
    // Two rounds: the holder may expire or release between our SET and GET.
    for (let round = 0; round < 2; round++) {
      if ((await storeCall(this.#redis.set(k, value, 'PX', ttlMs, 'NX'))) === 'OK') return undefined;
      const existing = await this.get(tenant, key);
      if (existing) return existing;
    }
    return this.get(tenant, key);
  }

  async get(tenant: string, key: string): Promise<IdempotencyEntry | undefined> {
    const raw = await storeCall(this.#redis.get(this.#key(tenant, key)));
    return raw === null ? undefined : (JSON.parse(raw) as IdempotencyEntry);
  }

  async complete(tenant: string, key: string, entry: Required<IdempotencyEntry>, ttlMs: number): Promise<void> {
    await storeCall(this.#redis.set(this.#key(tenant, key), JSON.stringify(entry), 'PX', ttlMs));
  }

  async release(tenant: string, key: string): Promise<void> {
    await storeCall(this.#redis.del(this.#key(tenant, key)));
  }

  async sweep(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {}
}
