/**
 * The error registry: every error the gateway can answer with, its HTTP status, its stable problem
 * `type` (RFC 9457) and its title. Codes cross the AMQP reply as the `gw-error-code` header and are
 * re-created on the other side, so match on `code`, never on `instanceof`.
 */
export const ERRORS = {
  GW_ERR_BAD_REQUEST: { status: 400, title: 'Bad request' },
  GW_ERR_PATH_INVALID: { status: 400, title: 'Invalid forwarded path' },
  GW_ERR_DELAY_INVALID: { status: 400, title: 'Invalid or too long job delay' },
  GW_ERR_PRIORITY_INVALID: { status: 400, title: 'Invalid job priority (Gw-Priority: high or normal, async jobs only)' },
  GW_ERR_UNAUTHORIZED: { status: 401, title: 'Missing or invalid credentials' },
  GW_ERR_FORBIDDEN: { status: 403, title: 'Not allowed to call this service' },
  GW_ERR_PRIORITY_FORBIDDEN: { status: 403, title: 'This API key may not send high-priority jobs' },
  GW_ERR_SERVICE_UNKNOWN: { status: 404, title: 'Unknown service' },
  GW_ERR_NOT_FOUND: { status: 404, title: 'Not found' },
  GW_ERR_JOB_NOT_FOUND: { status: 404, title: 'Job not found' },
  GW_ERR_DLQ_ENTRY_NOT_FOUND: { status: 404, title: 'Dead-letter entry not found' },
  GW_ERR_METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  GW_ERR_REQUEST_TIMEOUT: { status: 408, title: 'Request not received in time' },
  GW_ERR_BODY_TOO_LARGE: { status: 413, title: 'Request body too large' },
  GW_ERR_URI_TOO_LONG: { status: 414, title: 'Request URI too long' },
  GW_ERR_UNSUPPORTED_ENCODING: { status: 415, title: 'Unsupported content encoding' },
  GW_ERR_CONTENT_TYPE_INVALID: { status: 415, title: 'Content-Type malformed or longer than 255 bytes' },
  GW_ERR_EXPECTATION_FAILED: { status: 417, title: 'Expectation not supported' },
  GW_ERR_IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency-Key reused with a different request' },
  GW_ERR_IDEMPOTENCY_KEY_IN_USE: { status: 409, title: 'A request with this Idempotency-Key is still being processed' },
  GW_ERR_JOB_NOT_CANCELLABLE: { status: 409, title: 'Only a queued or retrying job can be cancelled' },
  GW_ERR_RATE_LIMITED: { status: 429, title: 'Rate limit exceeded' },
  GW_ERR_TOO_MANY_INFLIGHT: { status: 429, title: 'Too many requests in flight' },
  GW_ERR_DLQ_TOO_MANY_OPS: { status: 429, title: 'Too many dead-letter queue operations waiting' },
  GW_ERR_HEADERS_TOO_LARGE: { status: 431, title: 'Request header fields too large' },
  GW_ERR_INTERNAL: { status: 500, title: 'Internal error' },
  GW_ERR_DOWNSTREAM_UNAVAILABLE: { status: 502, title: 'Downstream service unreachable' },
  GW_ERR_DOWNSTREAM_BAD_RESPONSE: { status: 502, title: 'Downstream service sent an invalid response' },
  GW_ERR_DOWNSTREAM_STATUS: { status: 502, title: 'Downstream service answered with a failure status' },
  GW_ERR_DELIVERY_LIMIT: { status: 502, title: 'Job dead-lettered: its worker stopped while processing it too often' },
  GW_ERR_BREAKER_OPEN: { status: 503, title: 'Downstream circuit open' },
  GW_ERR_DOWNSTREAM_REFUSED: { status: 503, title: 'Downstream service refused the connection (nothing was sent)' },
  GW_ERR_QUEUE_FULL: { status: 503, title: 'Queue full' },
  GW_ERR_DELAYED_BACKLOG_FULL: { status: 503, title: 'Too many delayed jobs not yet due' },
  GW_ERR_BROKER_UNAVAILABLE: { status: 503, title: 'Message broker unavailable' },
  GW_ERR_BROKER_BLOCKED: { status: 503, title: 'Message broker is blocking publishers (resource alarm)' },
  GW_ERR_BROKER_INCAPABLE: { status: 503, title: 'Message broker lacks a capability the gateway needs (the process refuses to start)' },
  GW_ERR_CONSUMER_TIMEOUT_UNSAFE: { status: 503, title: 'A service can hold a delivery longer than the broker\'s consumer timeout (the dequeuer refuses to start)' },
  GW_ERR_UNROUTABLE: { status: 503, title: 'Message could not be routed (topology missing)' },
  GW_ERR_SHUTTING_DOWN: { status: 503, title: 'Shutting down' },
  GW_ERR_STORE_UNAVAILABLE: { status: 503, title: 'Job store unavailable' },
  GW_ERR_DLQ_BUSY: { status: 503, title: 'Dead-letter queue operation could not complete in time (busy or another replica holds it)' },
  GW_ERR_DLQ_TOO_LARGE: { status: 503, title: 'Dead-letter queue too large to operate on through the API' },
  GW_ERR_EVENTS_CATCHUP_BUSY: { status: 503, title: 'Too many event streams catching up from the events stream' },
  GW_ERR_REPLY_TIMEOUT: { status: 504, title: 'No reply within the wait' },
  GW_ERR_DOWNSTREAM_TIMEOUT: { status: 504, title: 'Downstream service timed out' },
  GW_ERR_DEADLINE_EXCEEDED: { status: 504, title: 'Deadline passed before the request could be processed' },
} as const satisfies Record<string, { status: number; title: string }>;

/** A registered error code. */
export type ErrorCode = keyof typeof ERRORS;

/**
 * How a job or request failed on the way to the downstream (the dequeuer's view: a call outcome, or
 * a crash loop the broker or the dequeuer ended).
 */
export type FailureKind = 'timeout' | 'network' | 'refused' | 'breaker_open' | 'server_error' | 'bad_response' | 'http_status' | 'redelivered' | 'delivery_limit';

/**
 * The one map from a failure kind to its registry code, for sync replies (rpc-handler), job events
 * (work-handler, delivery-limit deaths) and the job views alike.
 */
export const FAILURE_CODE: Readonly<Record<FailureKind, ErrorCode>> = {
  timeout: 'GW_ERR_DOWNSTREAM_TIMEOUT',
  network: 'GW_ERR_DOWNSTREAM_UNAVAILABLE',
  refused: 'GW_ERR_DOWNSTREAM_REFUSED',
  breaker_open: 'GW_ERR_BREAKER_OPEN',
  server_error: 'GW_ERR_DOWNSTREAM_STATUS',
  bad_response: 'GW_ERR_DOWNSTREAM_BAD_RESPONSE',
  http_status: 'GW_ERR_DOWNSTREAM_STATUS',
  redelivered: 'GW_ERR_DELIVERY_LIMIT',
  delivery_limit: 'GW_ERR_DELIVERY_LIMIT',
};

/**
 * The registry code of a recorded job error: a registry code stays as it is; a failure kind (what
 * events and stored jobs written before the map carried) goes through {@link FAILURE_CODE}.
 */
export function failureCode(code: string): ErrorCode {
  if (isErrorCode(code)) return code;
  return Object.hasOwn(FAILURE_CODE, code) ? FAILURE_CODE[code as FailureKind] : 'GW_ERR_INTERNAL';
}

/** Base URI of the problem `type`s; each code has a stable `${PROBLEM_TYPE_BASE}<slug>`. */
export const PROBLEM_TYPE_BASE = 'https://gateway.example/problems/';

/** `GW_ERR_QUEUE_FULL` → `queue-full`. */
export function problemSlug(code: ErrorCode): string {
  return code.slice('GW_ERR_'.length).toLowerCase().replaceAll('_', '-');
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

export interface GatewayErrorOptions {
  /** Seconds a client should wait before retrying (becomes `Retry-After`). */
  retryAfterS?: number;
  cause?: unknown;
  /** Extra problem members (must not contain internals). */
  extra?: Record<string, unknown>;
}

/** The one error type of the gateway; everything thrown on purpose is one of these. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfterS: number | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, detail?: string, options: GatewayErrorOptions = {}) {
    super(detail ?? ERRORS[code].title, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryAfterS = options.retryAfterS;
    this.extra = options.extra;
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof Error && isErrorCode((err as { code?: unknown }).code) && 'status' in err;
}

/** RFC 9457 problem details body. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: ErrorCode;
  instance?: string;
  requestId?: string;
  [extra: string]: unknown;
}

/** The single mapping from an error to a problem body; unknown errors become an opaque 500. */
export function toProblem(err: unknown, requestId?: string): { problem: ProblemDetails; retryAfterS?: number } {
  const ge = isGatewayError(err) ? err : new GatewayError('GW_ERR_INTERNAL');
  const problem: ProblemDetails = {
    ...ge.extra,
    type: PROBLEM_TYPE_BASE + problemSlug(ge.code),
    title: ERRORS[ge.code].title,
    status: ge.status,
    code: ge.code,
    ...(ge.message !== ERRORS[ge.code].title ? { detail: ge.message } : {}),
    ...(requestId ? { requestId } : {}),
  };
  return ge.retryAfterS === undefined ? { problem } : { problem, retryAfterS: ge.retryAfterS };
}

/** A problem answer ready to write: status, headers and the JSON body. */
export interface ProblemResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  problem: ProblemDetails;
}

/**
 * The one function every problem answer of both services comes from (Express handler, raw-socket
 * answers before Express, the dequeuer's health server): status and problem body from the registry,
 * `Retry-After` for retryable errors, `WWW-Authenticate` on 401, `Connection: close` where the
 * request could not be (or was not) read to its end.
 */
export function problemResponse(err: unknown, options: { requestId?: string | undefined; close?: boolean } = {}): ProblemResponse {
  const { problem, retryAfterS } = toProblem(err, options.requestId);
  const body = JSON.stringify(problem);
  const headers: Record<string, string> = { 'content-type': 'application/problem+json', 'content-length': String(Buffer.byteLength(body)) };
  if (retryAfterS !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfterS)));
  if (problem.status === 401) headers['www-authenticate'] = 'Bearer realm="gateway"';
  // A body we stopped reading must not be parsed as the next request on this connection.
  if (options.close || problem.status === 413 || problem.status === 408) headers.connection = 'close';
  return { status: problem.status, headers, body, problem };
}
