import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { EnqueuerConfig } from '../config.ts';
import { MemoryDelayedBacklog, RedisDelayedBacklog, type DelayedBacklog } from './delayed-backlog.ts';
import { MemoryIdempotencyStore, type IdempotencyStore } from './idempotency-store.ts';
import type { JobStore } from './job-store.ts';
import { MemoryJobStore } from './memory-job-store.ts';
import { RedisIdempotencyStore } from './redis-idempotency-store.ts';
import { RedisJobStore } from './redis-job-store.ts';

export type StoresConfig = Pick<EnqueuerConfig,
  'redisUrl' | 'redisKeyPrefix' | 'jobStoreMaxJobs' | 'jobStoreMaxBytes' | 'jobTtlMs' | 'jobActiveTtlMs' | 'jobsListMaxLimit' | 'idempotencyMaxKeys' | 'idempotencyMaxBytes' | 'sweepIntervalMs'>;

/**
 * The job store, the idempotency keys and the delayed backlog: in Redis when `REDIS_URL` is set
 * (shared by the replicas, on one client of their own), else in this process. Owns that client and
 * the sweeper that expires what the stores hold.
 */
export class Stores {
  readonly jobs: JobStore;
  readonly idempotency: IdempotencyStore;
  /** Delayed jobs accepted and not yet due, counted across replicas (docs/adr/1200-delayed-backlog-bound.md). */
  readonly delayed: DelayedBacklog;
  #redis: Redis | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #config: StoresConfig;
  #logger: Logger;

  constructor(o: { config: StoresConfig; logger: Logger }) {
    const config = o.config;
    this.#config = config;
    this.#logger = o.logger;
    const limits = { maxJobs: config.jobStoreMaxJobs, maxBytes: config.jobStoreMaxBytes, terminalTtlMs: config.jobTtlMs, activeTtlMs: config.jobActiveTtlMs, scanBudget: Math.max(500, 10 * config.jobsListMaxLimit) };
    if (config.redisUrl) {
      // Commands fail fast while Redis is away (typed 503) instead of queueing without bound.
      const redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectionName: 'gw-enqueuer' });
      redis.on('error', (err: Error) => this.#logger.warn({ err: err.message }, 'redis connection error'));
      this.#redis = redis;
      this.jobs = new RedisJobStore(redis, config.redisKeyPrefix, limits);
      this.idempotency = new RedisIdempotencyStore(redis, config.redisKeyPrefix);
      this.delayed = new RedisDelayedBacklog(redis, config.redisKeyPrefix);
    } else {
      this.jobs = new MemoryJobStore(limits);
      this.delayed = new MemoryDelayedBacklog();
      this.idempotency = new MemoryIdempotencyStore({ maxKeys: config.idempotencyMaxKeys, maxBytes: config.idempotencyMaxBytes });
    }
  }

  /** The Redis client of the stores, when they are in Redis (other shared state rides on it). */
  get redis(): Redis | undefined {
    return this.#redis;
  }

  /** Bytes held in this process (Redis bounds itself: maxmemory, TTLs). */
  get memoryBytes(): { jobs: number; idempotency: number } {
    return {
      jobs: this.jobs instanceof MemoryJobStore ? this.jobs.bytes : 0,
      idempotency: this.idempotency instanceof MemoryIdempotencyStore ? this.idempotency.bytes : 0,
    };
  }

  /** Connects Redis (a failure is logged: job requests answer 503 until it is back) and starts the sweeper. */
  async start(): Promise<void> {
    if (this.#redis) {
      await this.#redis.connect().catch((err: unknown) => this.#logger.error({ err }, 'redis not reachable at start-up; job requests answer 503 until it is'));
    }
    this.#sweeper = setInterval(() => {
      for (const store of [this.jobs, this.idempotency]) {
        store.sweep().catch((err: unknown) => this.#logger.warn({ err }, 'sweep failed'));
      }
    }, this.#config.sweepIntervalMs).unref();
  }

  /** Stops the sweeper, then closes the job store, the idempotency store and the Redis client. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    const errors: unknown[] = [];
    const redis = this.#redis;
    const steps = [
      () => this.jobs.close(),
      () => this.idempotency.close(),
      async () => {
        if (redis && redis.status !== 'end') await redis.quit().then(() => undefined, () => redis.disconnect());
      },
    ];
    for (const step of steps) await step().catch((err: unknown) => errors.push(err));
    if (errors.length) throw errors.length === 1 ? errors[0] : new AggregateError(errors, 'stores close failed');
  }
}
