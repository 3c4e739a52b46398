import { oldestKey } from '../../shared/oldest-key.ts';

/** A token bucket: `burst` tokens at most, refilled at `ratePerS` tokens per second. */
export interface BucketPolicy {
  /** Name shown in the `RateLimit-Policy` / `RateLimit` headers (`tenant`, `client`, `auth`). */
  readonly name: string;
  readonly ratePerS: number;
  readonly burst: number;
}

/** A bucket's stored state. */
export interface BucketState {
  tokens: number;
  updatedMs: number;
}

/** What one take decided. */
export interface TakeResult {
  allowed: boolean;
  /** Whole tokens left after this take. */
  remaining: number;
  /** When denied: ms until `cost` tokens are there again; 0 when allowed. */
  retryAfterMs: number;
  /** ms until the bucket is full again (the quota "resets"). */
  resetMs: number;
}

/**
 * Refills the bucket for the time elapsed and takes `cost` tokens if there are enough. Pure: returns
 * the new state instead of mutating. A missing state is a full bucket.
 */
export function takeTokens(state: BucketState | undefined, policy: BucketPolicy, nowMs: number, cost = 1): { state: BucketState; result: TakeResult } {
  const perMs = policy.ratePerS / 1000;
  let tokens = state ? Math.min(policy.burst, state.tokens + Math.max(0, nowMs - state.updatedMs) * perMs) : policy.burst;
  const allowed = tokens >= cost;
  if (allowed) tokens -= cost;
  return { state: { tokens, updatedMs: nowMs }, result: resultOf(allowed, tokens, policy, cost) };
}

/** The result for a bucket holding `tokens` after the decision (shared with the Redis store). */
export function resultOf(allowed: boolean, tokens: number, policy: BucketPolicy, cost = 1): TakeResult {
  const perMs = policy.ratePerS / 1000;
  return {
    allowed,
    remaining: Math.max(0, Math.floor(tokens)),
    retryAfterMs: allowed ? 0 : Math.ceil((cost - tokens) / perMs),
    resetMs: Math.ceil((policy.burst - tokens) / perMs),
  };
}

/** Where buckets live: this process (default) or a store shared by every enqueuer replica. */
export interface BucketStore {
  take(key: string, policy: BucketPolicy, cost?: number): Promise<TakeResult>;
  close(): Promise<void>;
}

/**
 * Buckets in this process. Bounded: past `maxKeys` the oldest-touched buckets are dropped (a dropped
 * bucket comes back full, which only ever errs towards letting a request through).
 */
export class MemoryBucketStore implements BucketStore {
  #buckets = new Map<string, BucketState>();
  #maxKeys: number;
  #now: () => number;

  constructor(options: { maxKeys?: number; now?: () => number } = {}) {
    this.#maxKeys = options.maxKeys ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Synchronous take (the async interface wraps it). */
  takeSync(key: string, policy: BucketPolicy, cost = 1): TakeResult {
    const prev = this.#buckets.get(key);
    const { state, result } = takeTokens(prev, policy, this.#now(), cost);
    // Re-insert so Map order is least-recently-touched first.
    if (prev) this.#buckets.delete(key);
    this.#buckets.set(key, state);
    if (this.#buckets.size > this.#maxKeys) {
      const oldest = oldestKey(this.#buckets);
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    return result;
  }

  take(key: string, policy: BucketPolicy, cost = 1): Promise<TakeResult> {
    return Promise.resolve(this.takeSync(key, policy, cost));
  }

  close(): Promise<void> {
    this.#buckets.clear();
    return Promise.resolve();
  }
}
