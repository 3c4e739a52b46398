import { GatewayError } from '../../shared/errors.ts';
import { TERMINAL_STATES, type JobError, type JobEvent, type JobResult, type JobState } from '../../shared/events.ts';

/** A job as the status API shows it, built only from its transitions. */
export interface JobRecord {
  id: string;
  tenant: string;
  service: string;
  state: JobState;
  /** Attempt of the latest transition (1-based). */
  attempt: number;
  /** Epoch ms the job was first published; lists are ordered by it. */
  createdAt: number;
  /** Epoch ms of the latest applied transition. */
  updatedAt: number;
  /** Epoch ms of the first `running`. */
  startedAt?: number;
  /** Epoch ms the job reached a terminal state. */
  finishedAt?: number;
  /** For `retrying`: when the next attempt is due. */
  nextAttemptAt?: number;
  /** The latest failure (kept after a later success, so the history stays visible). */
  error?: JobError;
  /** The latest downstream answer. */
  result?: JobResult;
  requestId?: string;
  /** Order of transitions: `attempt * 4 + phase` (queued 0, running 1, retrying 2, terminal 3). */
  rank: number;
  terminal: boolean;
}

/** What one transition writes: fields to set, fields set only if absent, fields to remove. */
export interface JobPatch {
  rank: number;
  terminal: boolean;
  replay: boolean;
  set: Partial<JobRecord>;
  setIfAbsent: Partial<JobRecord>;
  del: Array<keyof JobRecord>;
}

const PHASE: Record<JobState, number> = { queued: 0, running: 1, retrying: 2, succeeded: 3, failed: 3, dead: 3, cancelled: 3 };

/** Rank of a transition: later transitions of a job have a higher rank. */
export function rankOf(state: JobState, attempt: number): number {
  return attempt * 4 + PHASE[state];
}

/**
 * Whether a transition may change a job: never out of a terminal state (unless it is a replay),
 * never back to an earlier or equal rank (out-of-order or duplicate events).
 */
export function shouldApply(current: Pick<JobRecord, 'rank' | 'terminal' | 'updatedAt'> | undefined, patch: Pick<JobPatch, 'rank' | 'replay' | 'set'>): boolean {
  if (!current) return true;
  // A replay reopens a finished job, but only a finish older than the replay: the replay's own echo
  // from the events exchange must not reset a job that already ran again.
  if (patch.replay && current.terminal) return (patch.set.updatedAt ?? 0) >= current.updatedAt;
  return !current.terminal && patch.rank > current.rank;
}

/** The patch one event writes; the same for every store so they behave alike. */
export function eventPatch(e: JobEvent): JobPatch {
  const terminal = TERMINAL_STATES.has(e.state);
  const rank = rankOf(e.state, e.attempt);
  const set: Partial<JobRecord> = { state: e.state, attempt: e.attempt, updatedAt: e.at, rank, terminal };
  if (e.error) set.error = e.error;
  if (e.result) set.result = e.result;
  if (e.nextAttemptAt !== undefined) set.nextAttemptAt = e.nextAttemptAt;
  if (terminal) set.finishedAt = e.at;
  const setIfAbsent: Partial<JobRecord> = { id: e.jobId, tenant: e.tenant, service: e.service, createdAt: e.enqueuedAt ?? e.at };
  if (e.requestId) setIfAbsent.requestId = e.requestId;
  if (e.state === 'running') setIfAbsent.startedAt = e.at;
  const del: Array<keyof JobRecord> = [];
  if (e.state !== 'retrying') del.push('nextAttemptAt');
  if (!terminal) del.push('finishedAt');
  return { rank, terminal, replay: e.replay === true, set, setIfAbsent, del };
}

/** Applies a patch to a record (or creates one); returns undefined when the patch must not apply. */
export function applyPatch(current: JobRecord | undefined, patch: JobPatch): JobRecord | undefined {
  if (!shouldApply(current, patch)) return undefined;
  const next = { ...patch.setIfAbsent, ...current, ...patch.set } as JobRecord;
  for (const field of patch.del) delete next[field];
  return next;
}

/**
 * The record of a job the broker just confirmed, before any event reached the store: the first
 * transition (`queued`, attempt 1), ranked like that event would be.
 */
export function queuedRecord(job: { id: string; tenant: string; service: string; createdAt: number; updatedAt: number; requestId?: string }): JobRecord {
  return { ...job, state: 'queued', attempt: 1, rank: rankOf('queued', 1), terminal: false };
}

/**
 * Index member of a job: zero-padded creation time then id, so lexicographic order is creation
 * order and ties break by id (Redis `ZREVRANGEBYLEX` and the memory index use the same order).
 */
export function indexMember(createdAt: number, id: string): string {
  return `${String(Math.max(0, Math.floor(createdAt))).padStart(15, '0')}:${id}`;
}

export function memberId(member: string): string {
  return member.slice(16);
}

const MEMBER = /^\d{15}:[\x21-\x7e]{1,200}$/;

/** Opaque cursor of a list page: the index member of the last job scanned. */
export function encodeCursor(member: string): string {
  return Buffer.from(member).toString('base64url');
}

/** Decodes a cursor; a malformed one is a 400. */
export function decodeCursor(cursor: string): string {
  const member = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!MEMBER.test(member)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'invalid cursor');
  return member;
}

/** A list query, validated. */
export interface ListQuery {
  service?: string;
  /** Only jobs of these services (the API key's allow-list); undefined = every service. */
  services?: ReadonlySet<string>;
  state?: JobState;
  /** Only jobs created at or after / before this epoch ms. */
  since?: number;
  until?: number;
  /** Only the job(s) of this request id. */
  requestId?: string;
  limit: number;
  /** Index member to continue after (exclusive), from {@link decodeCursor}. */
  after?: string;
}

export interface ListPage {
  jobs: JobRecord[];
  /** Cursor of the next page; absent at the end. */
  next?: string;
}

/** Whether a record matches a list query's filters. */
export function matchesQuery(r: JobRecord, q: ListQuery): boolean {
  return (q.service === undefined || r.service === q.service) && (q.services === undefined || q.services.has(r.service)) && (q.state === undefined || r.state === q.state) &&
    (q.since === undefined || r.createdAt >= q.since) && (q.until === undefined || r.createdAt < q.until) && (q.requestId === undefined || r.requestId === q.requestId);
}
