import type { JobEvent } from '../../shared/events.ts';
import type { JobRecord, ListPage, ListQuery } from './job-record.ts';

/**
 * Where job status lives. Every lookup is scoped by tenant: another tenant's job does not exist.
 * Writes come only from transitions (`queued` from the enqueuer after the broker confirmed, the rest
 * from the events exchange) and are monotonic, so replicas applying the same events in any order
 * converge.
 */
export interface JobStore {
  readonly kind: 'memory' | 'redis';
  /** Applies a transition (idempotent, monotonic); resolves with the job as it is afterwards. */
  apply(event: JobEvent): Promise<JobRecord>;
  get(tenant: string, id: string): Promise<JobRecord | undefined>;
  /** Newest first; a page may hold fewer than `limit` jobs when filters skip many, follow `next`. */
  list(tenant: string, query: ListQuery): Promise<ListPage>;
  /**
   * Offset of the last events-stream message whose transitions are all applied: a restart resumes
   * after it. Redis keeps it (shared by the replicas: each applies every message in order); the
   * memory store has none (a new process rebuilds from the stream's retained window).
   */
  appliedOffset(): Promise<number | undefined>;
  /** Records {@link appliedOffset} (never moves it back). */
  recordOffset(offset: number): Promise<void>;
  /** Drops expired entries (the sweeper calls it; tests may too). */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

/** Limits of a job store. */
export interface JobStoreLimits {
  /** Most jobs kept (memory store); the least recently used go first. */
  maxJobs: number;
  /** Most bytes of job records (results included) kept (memory store), estimated; LRU evicted first. @default unbounded */
  maxBytes?: number;
  /** How long a finished job stays readable (ms). */
  terminalTtlMs: number;
  /** How long a job that never finishes (or whose final event was missed) stays (ms). */
  activeTtlMs: number;
  /** Index entries scanned per list call at most, so a filter cannot make one call unbounded. */
  scanBudget: number;
}
