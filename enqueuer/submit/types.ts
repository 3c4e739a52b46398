import type { ServiceConfig } from '../../shared/config/services.ts';
import type { Priority } from '../../shared/topology/lanes.ts';
import type { JobRecord } from '../jobs/job-record.ts';

/** The client's side of a request: a wait for an answer ends when it closes (an Express `Response` is one). */
export interface ClientConnection {
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/** Ids of the job a request created (the request log line and the error handler log them). */
export interface JobLogFields {
  jobId: string;
  requestId: string;
  tenant: string;
  service: string;
  traceId: string;
}

/**
 * One request to forward, as the route parsed it from HTTP: everything in it is validated. The
 * layer writes {@link jobId} and {@link job} back as soon as they exist, also when it then fails.
 */
export interface SubmitRequest {
  service: string;
  svc: Readonly<ServiceConfig>;
  method: string;
  /** Forwarded path (starts with `/`) and raw query string (without `?`). */
  path: string;
  query: string;
  /** The allow-listed request headers, lower-case names. */
  headers: Record<string, string>;
  body: Buffer;
  /** The authenticated tenant. */
  tenant: string;
  requestId: string;
  /** Sync: how long to wait for the reply (ms). Async: how long to wait for the result (`wait=N`), undefined = answer 202 at once. */
  waitMs: number | undefined;
  /** Async: run no earlier than this many ms from now (0 = at once). */
  delayMs: number;
  /** Async: `high` goes to the service's high lane (docs/fairness.md). */
  priority: Priority;
  idempotencyKey: string | undefined;
  /** The client's valid trace context, continued by the publish span. */
  traceparent: string | undefined;
  tracestate: string | undefined;
  /** A wait (for a result, for a key in use) stops when this closes. */
  client: ClientConnection;
  /** Out: the id of the job that answers (new, or replayed from the Idempotency-Key). */
  jobId: string | undefined;
  /** Out: the new job's ids, once it was created. */
  job: JobLogFields | undefined;
}

/** A downstream answer, checked (status 200-599, allow-listed valid headers): ready to be written as it is. */
export interface Reply {
  status: number;
  headers: ReadonlyArray<readonly [string, string]>;
  body: Buffer;
}

/** A finished job's downstream answer. */
export interface JobReply extends Reply {
  jobId: string;
  bodyTruncated: boolean;
}

/** What an async submission answers: the job as it stands (202), or its result when it finished within the wait. */
export type Accepted = { kind: 'accepted'; job: JobRecord } | { kind: 'finished'; reply: JobReply };
