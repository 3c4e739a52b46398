import { failureCode, type ErrorCode } from '../../shared/errors.ts';
import type { DeadLetterEntry } from '../dlq-entry.ts';
import type { JobRecord } from '../jobs/job-record.ts';

/** Ids listed per group at most (the count is exact). */
export const MAX_GROUP_IDS = 1000;

export interface DlqGroup {
  id: string;
  status: number | null;
  code: ErrorCode | null;
  reason: string | null;
  count: number;
  firstSeenAt: string | null;
  lastSeenAt: string | null;
  /** Every id of the group (the view cuts it at {@link MAX_GROUP_IDS}). */
  ids: string[];
}

/** What a failure is grouped by: the final failure's HTTP status and registry code (from the job), and the broker's dead-letter reason. */
export function failureOf(entry: DeadLetterEntry, job: Pick<JobRecord, 'error'> | undefined): { status: number | null; code: ErrorCode | null; reason: string | null } {
  const code = job?.error ? failureCode(job.error.code) : entry.reason === 'delivery_limit' ? 'GW_ERR_DELIVERY_LIMIT' : null;
  return { status: job?.error?.status ?? null, code, reason: entry.reason };
}

export function groupId(f: { status: number | null; code: string | null; reason: string | null }): string {
  return Buffer.from(`${f.status ?? ''}|${f.code ?? ''}|${f.reason ?? ''}`).toString('base64url');
}

const min = (a: string | null, b: string | null): string | null => (a === null ? b : b === null ? a : a < b ? a : b);
const max = (a: string | null, b: string | null): string | null => (a === null ? b : b === null ? a : a > b ? a : b);

/**
 * Groups a tenant's dead letters by failure, largest group first, with counts and the first and
 * last time a member failed. `jobOf` is the job store's record of an id (undefined when expired).
 */
export function groupDeadLetters(entries: readonly DeadLetterEntry[], jobOf: (id: string) => Pick<JobRecord, 'error'> | undefined): DlqGroup[] {
  const groups = new Map<string, DlqGroup>();
  const seen = new Set<string>();
  for (const e of entries) {
    // Several copies of one id (a replay that failed again) count once.
    if (!e.jobId || seen.has(e.jobId)) continue;
    seen.add(e.jobId);
    const f = failureOf(e, jobOf(e.jobId));
    const id = groupId(f);
    let g = groups.get(id);
    if (!g) groups.set(id, (g = { id, ...f, count: 0, firstSeenAt: null, lastSeenAt: null, ids: [] }));
    g.ids.push(e.jobId);
    g.count++;
    // lastFailedAt has the x-death's second precision: never earlier than the first failure.
    g.firstSeenAt = min(g.firstSeenAt, min(e.firstFailedAt, e.lastFailedAt));
    g.lastSeenAt = max(g.lastSeenAt, max(e.lastFailedAt, e.firstFailedAt));
  }
  return [...groups.values()].sort((a, b) => b.count - a.count || a.id.localeCompare(b.id));
}
