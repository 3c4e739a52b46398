import type { Redis } from 'ioredis';
import { rankOf } from '../jobs/job-record.ts';
import { storeCall } from '../jobs/redis-job-store.ts';
import type { JobEvent } from '../../shared/events.ts';
import { oldestKey } from '../../shared/oldest-key.ts';

/**
 * Every transition of a job (the job store keeps only the latest), for the job detail's timeline:
 * attempts, their times, errors and retry gaps. Keyed by the transition's rank (and `at` for a
 * replay's reopened attempts), so the same event heard by several replicas is kept once.
 */
export interface Timeline {
  add(e: JobEvent): Promise<void>;
  /** Oldest first. */
  get(tenant: string, jobId: string): Promise<JobEvent[]>;
  /** What the accepting replica forwarded (never the body). */
  setRequest(tenant: string, jobId: string, request: JobRequestMeta): Promise<void>;
  request(tenant: string, jobId: string): Promise<JobRequestMeta | undefined>;
}

/** A job's request as forwarded downstream: method, path, query, the allow-listed headers, body size (the body is not kept). */
export interface JobRequestMeta {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  bodyBytes: number;
  /** Epoch ms the job is due, for a delayed job. */
  notBefore?: number;
}

/** Transitions kept per job: a job that retries beyond this keeps its latest ones. */
export const MAX_TRANSITIONS = 64;

const fieldOf = (e: JobEvent): string => `${String(rankOf(e.state, e.attempt)).padStart(6, '0')}${e.replay ? `:r${e.at}` : ''}`;

/**
 * A job's transitions in the order they happened: by run (a replay starts a new one, at its time),
 * then by rank. Not by `at` alone: `queued` is stamped by the enqueuer after the confirm and `running`
 * by the dequeuer, on other clocks, and the dequeuer can start the job before the confirm returns.
 */
function ordered(events: JobEvent[]): JobEvent[] {
  const replays = events.filter((e) => e.replay).map((e) => e.at);
  const run = (e: JobEvent): number => replays.filter((at) => at <= e.at).length;
  return events.sort((a, b) => run(a) - run(b) || rankOf(a.state, a.attempt) - rankOf(b.state, b.attempt) || a.at - b.at).slice(-MAX_TRANSITIONS);
}

/** One replica's timelines, LRU-bounded by jobs (each replica hears every event; requests only the accepting one). */
export class MemoryTimeline implements Timeline {
  #jobs = new Map<string, Map<string, JobEvent>>();
  #requests = new Map<string, JobRequestMeta>();
  #maxJobs: number;

  constructor(maxJobs = 20_000) {
    this.#maxJobs = maxJobs;
  }

  async add(e: JobEvent): Promise<void> {
    const key = `${e.tenant}\u0000${e.jobId}`;
    let m = this.#jobs.get(key);
    if (m) this.#jobs.delete(key);
    else m = new Map();
    this.#jobs.set(key, m);
    m.set(fieldOf(e), e);
    if (m.size > MAX_TRANSITIONS) m.delete(m.keys().next().value!);
    if (this.#jobs.size > this.#maxJobs) this.#jobs.delete(oldestKey(this.#jobs)!);
  }

  async get(tenant: string, jobId: string): Promise<JobEvent[]> {
    return ordered([...(this.#jobs.get(`${tenant}\u0000${jobId}`)?.values() ?? [])]);
  }

  async setRequest(tenant: string, jobId: string, request: JobRequestMeta): Promise<void> {
    this.#requests.set(`${tenant}\u0000${jobId}`, request);
    if (this.#requests.size > this.#maxJobs) this.#requests.delete(oldestKey(this.#requests)!);
  }

  async request(tenant: string, jobId: string): Promise<JobRequestMeta | undefined> {
    return this.#requests.get(`${tenant}\u0000${jobId}`);
  }
}

const REQUEST_FIELD = 'request';

/** Timelines shared by the replicas: one hash per job (field = rank, and `request`), expiring with the job. */
export class RedisTimeline implements Timeline {
  #redis: Redis;
  #prefix: string;
  #ttlMs: number;

  constructor(redis: Redis, keyPrefix: string, ttlMs: number) {
    this.#redis = redis;
    this.#prefix = keyPrefix;
    this.#ttlMs = ttlMs;
  }

  #key(tenant: string, jobId: string): string {
    return `${this.#prefix}timeline:${encodeURIComponent(tenant)}:${jobId}`;
  }

  async add(e: JobEvent): Promise<void> {
    const key = this.#key(e.tenant, e.jobId);
    await storeCall(this.#redis.multi().hset(key, fieldOf(e), JSON.stringify(e)).pexpire(key, this.#ttlMs).exec());
  }

  async get(tenant: string, jobId: string): Promise<JobEvent[]> {
    const all = await storeCall(this.#redis.hgetall(this.#key(tenant, jobId)));
    return ordered(Object.entries(all).filter(([k]) => k !== REQUEST_FIELD).map(([, v]) => JSON.parse(v) as JobEvent));
  }

  async setRequest(tenant: string, jobId: string, request: JobRequestMeta): Promise<void> {
    const key = this.#key(tenant, jobId);
    await storeCall(this.#redis.multi().hset(key, REQUEST_FIELD, JSON.stringify(request)).pexpire(key, this.#ttlMs).exec());
  }

  async request(tenant: string, jobId: string): Promise<JobRequestMeta | undefined> {
    const v = await storeCall(this.#redis.hget(this.#key(tenant, jobId), REQUEST_FIELD));
    return v === null ? undefined : (JSON.parse(v) as JobRequestMeta);
  }
}
