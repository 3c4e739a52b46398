/**
 * Events on the `<prefix>.events` topic exchange, which routes everything into the `<prefix>.events`
 * stream: job transitions published by the enqueuer (`queued`) and the dequeuer (the enqueuer turns
 * them into the job status view and SSE streams), and breaker transitions (the enqueuer sheds sync
 * requests for a service whose breaker is open). Job transitions travel in v2 batches
 * ({@link EventBatch}); a v1 message holds one event (breaker transitions, older publishers).
 */

/** Job states. `queued` is recorded by the enqueuer once the broker confirmed the job. */
export const JOB_STATES = ['queued', 'running', 'retrying', 'succeeded', 'failed', 'dead', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

/**
 * States after which nothing more happens to a job (unless an operator replays it). `cancelled`: an
 * operator cancelled it while queued or waiting for a retry; no dequeuer sends it downstream
 * (docs/adr/1600-dashboard-dlq-workbench-cancel.md).
 */
export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'dead', 'cancelled']);

/** The downstream's answer as stored with a job (body base64, possibly truncated). */
export interface JobResult {
  status: number;
  headers: Record<string, string>;
  bodyBase64: string;
  bodyTruncated: boolean;
}

export interface JobError {
  /** Registry code (`FAILURE_CODE` of shared/errors.ts); events and jobs recorded before carried the kind itself (`timeout`, `http_status` …). */
  code: string;
  message: string;
  /** Downstream status, when the failure was an HTTP answer. */
  status?: number;
}

export interface JobEvent {
  v: 1;
  kind: 'job';
  jobId: string;
  tenant: string;
  service: string;
  state: JobState;
  attempt: number;
  /** Epoch ms of the transition. */
  at: number;
  /** Epoch ms the job was first published (the envelope's `enqueuedAt`); orders job lists. */
  enqueuedAt?: number;
  /**
   * Set on events of a job an operator replayed from the DLQ: only such an event may move a job out
   * of a terminal state.
   */
  replay?: boolean;
  requestId?: string;
  traceparent?: string;
  error?: JobError;
  /** For `retrying`: when the next attempt is due (epoch ms). */
  nextAttemptAt?: number;
  result?: JobResult;
  /**
   * Set only inside a v2 batch: the `running` transition of this attempt began at this time and was
   * folded into this event (both were in one batch). {@link decodeEvents} expands it back.
   */
  startedAt?: number;
  /**
   * Set by the dequeuer on attempt 1's `running` (and on the event it is folded into): the job was
   * queued at this time (the envelope's `enqueuedAt`). The enqueuer announces `queued` only once the
   * broker confirmed the job, which can reach the stream after the dequeuer already ran it; decoders
   * expand this into an {@link implied} `queued` just before the `running`, so a job's transitions
   * are in order on every reader (docs/adr/1100-events-on-a-stream.md).
   */
  queuedAt?: number;
  /**
   * Set only by {@link decodeEvents}, never on the wire: a `queued` expanded from {@link queuedAt}. It
   * repeats the enqueuer's own `queued` (before or after it): streams show whichever comes first;
   * the store, timelines and counts keep the enqueuer's.
   */
  implied?: true;
}

export interface BreakerEvent {
  v: 1;
  kind: 'breaker';
  service: string;
  state: 'closed' | 'half-open' | 'open';
  /** Seconds until the breaker lets a probe through (when open). */
  retryAfterS: number;
  at: number;
}

export type GatewayEvent = JobEvent | BreakerEvent;

/** Version 2 envelope: the transitions one process collected over one flush (shared/amqp/event-batcher.ts). */
export interface EventBatch {
  v: 2;
  kind: 'batch';
  events: GatewayEvent[];
}

/** A replica's start marker: once it reads its own marker back it has caught up with the stream. */
export interface StreamMarker {
  v: 2;
  kind: 'marker';
  id: string;
}

/** Routing key of v2 batches (matches `job.#`, so a queue bound for job events still hears them). */
export const BATCH_ROUTING_KEY = 'job.batch';
export const MARKER_ROUTING_KEY = 'marker';
/**
 * Header of a batch: epoch ms its oldest transition was handed to the batcher, so a reader measures
 * how long after it happened a transition became visible (batching wait included).
 */
export const FIRST_AT_HEADER = 'gw-first-at';

/** What one stream message holds, decoded. */
export interface DecodedEvents {
  events: GatewayEvent[];
  /** Set when the message is a {@link StreamMarker}. */
  marker?: string;
  /** Events that were not valid v1 events (skipped, counted by the caller). */
  invalid: number;
}

export function jobEventRoutingKey(e: Pick<JobEvent, 'service' | 'state'>): string {
  return `job.${e.service}.${e.state}`;
}

export function breakerEventRoutingKey(service: string): string {
  return `breaker.${service}`;
}

export function encodeEvent(e: GatewayEvent): Buffer {
  return Buffer.from(JSON.stringify(e));
}

/** Parses an event; returns undefined for anything that is not a v1 event (logged by the caller). */
export function decodeEvent(content: Buffer): GatewayEvent | undefined {
  let e: unknown;
  try {
    e = JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
  return validEvent(e);
}

/**
 * Decodes a message of the events exchange or stream: a v1 event, a v2 batch (a folded `running`
 * expanded back into its own transition, in order) or a v2 marker. Undefined when it is none of them.
 */
export function decodeEvents(content: Buffer): DecodedEvents | undefined {
  let o: unknown;
  try {
    o = JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!o || typeof o !== 'object') return undefined;
  const m = o as Record<string, unknown>;
  if (m.v === 2 && m.kind === 'marker' && typeof m.id === 'string') return { events: [], marker: m.id, invalid: 0 };
  if (m.v === 2 && m.kind === 'batch' && Array.isArray(m.events)) {
    const events: GatewayEvent[] = [];
    let invalid = 0;
    for (const raw of m.events as unknown[]) {
      const e = validEvent(raw);
      if (!e) invalid++;
      else if (e.kind === 'job') expand(e, events);
      else events.push(e);
    }
    return { events, invalid };
  }
  const e = validEvent(o);
  if (!e) return undefined;
  const events: GatewayEvent[] = [];
  if (e.kind === 'job') expand(e, events);
  else events.push(e);
  return { events, invalid: 0 };
}

/** Pushes a job event as the transitions it stands for: the implied `queued` and the folded `running` first. */
function expand(e: JobEvent, out: GatewayEvent[]): void {
  if (e.startedAt === undefined && e.queuedAt === undefined) {
    out.push(e);
    return;
  }
  const { startedAt, queuedAt, ...final } = e;
  const { result: _r, error: _e, nextAttemptAt: _n, ...base } = final;
  if (queuedAt !== undefined) out.push({ ...base, state: 'queued', attempt: 1, at: queuedAt, implied: true });
  if (startedAt !== undefined && e.state !== 'running') out.push({ ...base, state: 'running', at: startedAt });
  out.push(final);
}

function validEvent(e: unknown): GatewayEvent | undefined {
  if (!e || typeof e !== 'object') return undefined;
  const o = e as Record<string, unknown>;
  if (o.v !== 1 || typeof o.service !== 'string' || typeof o.at !== 'number') return undefined;
  if (o.kind === 'job') {
    if (typeof o.jobId !== 'string' || typeof o.tenant !== 'string' || typeof o.attempt !== 'number') return undefined;
    if (!(JOB_STATES as readonly unknown[]).includes(o.state)) return undefined;
    // Only the decoder marks an event implied.
    if (o.implied !== undefined) delete o.implied;
    return o as unknown as JobEvent;
  }
  if (o.kind === 'breaker' && ['closed', 'half-open', 'open'].includes(o.state as string) && typeof o.retryAfterS === 'number') {
    return o as unknown as BreakerEvent;
  }
  return undefined;
}

/** Builds the stored result of a downstream answer, truncating the body to `maxBytes`. */
export function toJobResult(res: { status: number; headers: Record<string, string>; body: Buffer }, maxBytes: number): JobResult {
  const truncated = res.body.length > maxBytes;
  return {
    status: res.status,
    headers: res.headers,
    bodyBase64: (truncated ? res.body.subarray(0, maxBytes) : res.body).toString('base64'),
    bodyTruncated: truncated,
  };
}

/**
 * Message ids for events: unique per process (a random prefix and a counter), which is all a
 * confirm channel needs to match returns, and far cheaper than a UUID per event on the job path.
 */
export function eventIdSource(): () => string {
  const prefix = `ev-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 10)}-`;
  let seq = 0;
  return () => prefix + (seq++).toString(36);
}
