import type { JobEvent } from '../../shared/events.ts';
import { oldestKey } from '../../shared/oldest-key.ts';
import { applyPatch, encodeCursor, eventPatch, indexMember, matchesQuery, type JobRecord, type ListPage, type ListQuery } from './job-record.ts';
import type { JobStore, JobStoreLimits } from './job-store.ts';

interface Entry {
  record: JobRecord;
  expiresAt: number;
  bytes: number;
}

/** Fixed per-job overhead counted against the byte bound (Map slot, record object, index member). */
const JOB_OVERHEAD_BYTES = 512;

/** Estimated bytes a job record holds: its result body (base64) and headers dominate. */
export function jobRecordBytes(r: JobRecord): number {
  let n = JOB_OVERHEAD_BYTES + r.id.length + r.tenant.length + r.service.length;
  if (r.result) {
    n += r.result.bodyBase64.length;
    for (const [name, value] of Object.entries(r.result.headers)) n += name.length + value.length + 16;
  }
  if (r.error) n += JSON.stringify(r.error).length;
  return n;
}

/**
 * In-process job store (one enqueuer, or several that each see every event). Bounded: at most
 * `maxJobs` entries, least recently used evicted first, and every entry expires (finished jobs after
 * `terminalTtlMs`), so memory stays flat under any load.
 */
export class MemoryJobStore implements JobStore {
  readonly kind = 'memory';
  #limits: JobStoreLimits;
  #now: () => number;
  /** Insertion order = recency order (an access re-inserts), so the first key is the LRU one. */
  #entries = new Map<string, Entry>();
  /** Per tenant, index members sorted ascending; removed jobs are skipped lazily and compacted. */
  #index = new Map<string, string[]>();
  #indexed = 0;
  #bytes = 0;
  evictions = 0;

  constructor(limits: JobStoreLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Estimated bytes held (the `gw_job_store_bytes` gauge). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Index members held (live and not yet compacted). */
  get indexed(): number {
    return this.#indexed;
  }

  async apply(event: JobEvent): Promise<JobRecord> {
    const key = keyOf(event.tenant, event.jobId);
    const current = this.#live(key);
    const next = applyPatch(current?.record, eventPatch(event));
    if (!next) {
      this.#touch(key, current!);
      return current!.record;
    }
    const ttl = next.terminal ? this.#limits.terminalTtlMs : this.#limits.activeTtlMs;
    const entry = { record: next, expiresAt: this.#now() + ttl, bytes: jobRecordBytes(next) };
    this.#delete(key);
    this.#entries.set(key, entry);
    this.#bytes += entry.bytes;
    if (!current) this.#addToIndex(next);
    const maxBytes = this.#limits.maxBytes ?? Number.POSITIVE_INFINITY;
    while (this.#entries.size > this.#limits.maxJobs || (this.#bytes > maxBytes && this.#entries.size > 1)) {
      this.#delete(oldestKey(this.#entries)!);
      this.evictions++;
    }
    return next;
  }

  async get(tenant: string, id: string): Promise<JobRecord | undefined> {
    const key = keyOf(tenant, id);
    const entry = this.#live(key);
    if (!entry) return undefined;
    this.#touch(key, entry);
    return entry.record;
  }

  async list(tenant: string, q: ListQuery): Promise<ListPage> {
    const index = this.#index.get(tenant) ?? [];
    // Position just below the cursor (exclusive), walking towards older members.
    let i = q.after === undefined ? index.length - 1 : lowerBound(index, q.after) - 1;
    const jobs: JobRecord[] = [];
    let scanned = 0;
    let last: string | undefined;
    for (; i >= 0 && jobs.length < q.limit && scanned < this.#limits.scanBudget; i--, scanned++) {
      const member = index[i]!;
      last = member;
      const entry = this.#live(keyOf(tenant, member.slice(16)));
      if (entry && indexMember(entry.record.createdAt, entry.record.id) === member && matchesQuery(entry.record, q)) jobs.push(entry.record);
    }
    return i >= 0 && last !== undefined ? { jobs, next: encodeCursor(last) } : { jobs };
  }

  /** None: a new process starts empty and rebuilds from the stream's retained window. */
  async appliedOffset(): Promise<number | undefined> {
    return undefined;
  }

  async recordOffset(): Promise<void> {}

  async sweep(): Promise<number> {
    const now = this.#now();
    let removed = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt <= now) {
        this.#delete(key);
        removed++;
      }
    }
    if (this.#indexed > 2 * this.#entries.size + 1024) this.#compact();
    return removed;
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#index.clear();
    this.#bytes = 0;
  }

  #delete(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
  }

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt <= this.#now()) {
      this.#delete(key);
      return undefined;
    }
    return entry;
  }

  #touch(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#entries.set(key, entry);
  }

  #addToIndex(r: JobRecord): void {
    let index = this.#index.get(r.tenant);
    if (!index) this.#index.set(r.tenant, (index = []));
    const member = indexMember(r.createdAt, r.id);
    // Nearly always an append: jobs arrive in creation order.
    if (index.length === 0 || index[index.length - 1]! < member) index.push(member);
    else {
      const at = lowerBound(index, member);
      // A job evicted and then seen again keeps its member: index it once.
      if (index[at] === member) return;
      index.splice(at, 0, member);
    }
    this.#indexed++;
    if (this.#indexed > 2 * this.#limits.maxJobs + 1024) this.#compact();
  }

  /** Rebuilds the indexes from the live entries (drops members of evicted or expired jobs). */
  #compact(): void {
    this.#index.clear();
    this.#indexed = 0;
    for (const { record } of this.#entries.values()) {
      let index = this.#index.get(record.tenant);
      if (!index) this.#index.set(record.tenant, (index = []));
      index.push(indexMember(record.createdAt, record.id));
      this.#indexed++;
    }
    for (const index of this.#index.values()) index.sort();
  }
}

function keyOf(tenant: string, id: string): string {
  return `${tenant}\u0000${id}`;
}

/** First position whose member is ≥ `member`. */
function lowerBound(sorted: readonly string[], member: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < member) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
