import type { JobEvent } from '../../shared/events.ts';
import type { EventId } from './replay-log.ts';

type Listener = (e: JobEvent, id: EventId) => void;

/**
 * In-process fan-out of job events to SSE streams and `wait=N` waiters. Listeners are keyed by job
 * and by tenant so one event costs two map lookups, whatever the number of open streams.
 */
export class JobEventHub {
  #byJob = new Map<string, Set<Listener>>();
  #byTenant = new Map<string, Set<Listener>>();

  /** Listeners currently registered (for tests and a gauge). */
  get listeners(): number {
    let n = 0;
    for (const s of this.#byJob.values()) n += s.size;
    for (const s of this.#byTenant.values()) n += s.size;
    return n;
  }

  /** One transition as read from the events stream, with its position there. */
  emit(e: JobEvent, id: EventId): void {
    for (const fn of this.#byJob.get(jobKey(e.tenant, e.jobId)) ?? []) fn(e, id);
    for (const fn of this.#byTenant.get(e.tenant) ?? []) fn(e, id);
  }

  /** Subscribes to one job's events; returns the unsubscribe function. */
  onJob(tenant: string, jobId: string, fn: Listener): () => void {
    return add(this.#byJob, jobKey(tenant, jobId), fn);
  }

  /** Subscribes to every job event of a tenant; returns the unsubscribe function. */
  onTenant(tenant: string, fn: Listener): () => void {
    return add(this.#byTenant, tenant, fn);
  }
}

function jobKey(tenant: string, jobId: string): string {
  return `${tenant}\u0000${jobId}`;
}

function add(map: Map<string, Set<Listener>>, key: string, fn: Listener): () => void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(fn);
  return () => {
    set.delete(fn);
    if (set.size === 0 && map.get(key) === set) map.delete(key);
  };
}
