import type { Readable } from 'node:stream';
import CircuitBreaker from 'opossum';
import { Pool } from 'undici';
import type { ServiceConfig } from '../shared/config/services.ts';
import type { RequestEnvelope } from '../shared/envelope.ts';

/** What the downstream answered. */
export interface DownstreamResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Why a downstream call produced no usable response. `refused` is never thrown by {@link Downstream}
 * (a connect failure is a `network` failure there); a sync reply names it when nothing was sent.
 */
export type DownstreamFailure = 'timeout' | 'network' | 'refused' | 'breaker_open' | 'server_error' | 'bad_response';

export class DownstreamError extends Error {
  readonly kind: DownstreamFailure;
  /** The downstream's own answer for `server_error` (a 5xx is still a response). */
  readonly response: DownstreamResponse | undefined;
  /** For `breaker_open`: seconds until the breaker lets a probe through. */
  readonly retryAfterS: number | undefined;
  constructor(kind: DownstreamFailure, message: string, extra: { response?: DownstreamResponse; retryAfterS?: number; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'DownstreamError';
    this.kind = kind;
    this.response = extra.response;
    this.retryAfterS = extra.retryAfterS;
  }
}

export type BreakerState = 'closed' | 'half-open' | 'open';

export interface DownstreamEvents {
  onBreakerState?: (service: string, state: BreakerState, retryAfterS: number) => void;
}

/**
 * One downstream service: an undici pool on its fixed origin, wrapped in an opossum breaker. The
 * per-call timeout is the caller's (the message's remaining deadline), so opossum's own timeout is
 * off; 5xx, timeouts and network errors count as failures, 4xx do not.
 */
export class Downstream {
  readonly service: string;
  readonly config: Readonly<ServiceConfig>;
  readonly breaker: CircuitBreaker<[RequestEnvelope, number, string | undefined], DownstreamResponse>;
  #pool: Pool;
  #basePath: string;
  #openedAt = 0;
  #networkStreak = 0;

  constructor(service: string, config: Readonly<ServiceConfig>, events: DownstreamEvents = {}) {
    this.service = service;
    this.config = config;
    const url = new URL(config.url);
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.#pool = new Pool(url.origin, { connections: config.connections, keepAliveTimeout: 10_000 });
    this.breaker = new CircuitBreaker((env: RequestEnvelope, timeoutMs: number, traceparent: string | undefined) => this.#request(env, timeoutMs, traceparent), {
      timeout: false,
      volumeThreshold: config.breaker.volumeThreshold,
      errorThresholdPercentage: config.breaker.errorThresholdPercentage,
      resetTimeout: config.breaker.resetTimeoutMs,
      rollingCountTimeout: config.breaker.rollingWindowMs,
      name: service,
    });
    const emit = (state: BreakerState): void => events.onBreakerState?.(service, state, this.retryAfterS());
    this.breaker.on('open', () => {
      this.#openedAt = Date.now();
      emit('open');
    });
    this.breaker.on('halfOpen', () => emit('half-open'));
    this.breaker.on('close', () => emit('closed'));
  }

  get state(): BreakerState {
    return this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half-open' : 'closed';
  }

  /** Seconds until an open breaker lets a probe through (at least 1). */
  retryAfterS(): number {
    const left = this.#openedAt + this.config.breaker.resetTimeoutMs - Date.now();
    return Math.max(1, Math.ceil(left / 1000));
  }

  /**
   * Calls the downstream through the breaker; resolves with any non-5xx response. `traceparent`
   * (this hop's span) is sent as the W3C header; default: the one the message carried.
   */
  async call(env: RequestEnvelope, timeoutMs: number, traceparent: string | undefined = env.traceparent): Promise<DownstreamResponse> {
    try {
      const response = await this.breaker.fire(env, timeoutMs, traceparent);
      this.#networkStreak = 0;
      return response;
    } catch (err) {
      if (err instanceof DownstreamError) {
        this.#countStreak(err);
        throw err;
      }
      if ((err as { code?: string }).code === 'EOPENBREAKER') {
        throw new DownstreamError('breaker_open', `circuit open for ${this.service}`, { retryAfterS: this.retryAfterS() });
      }
      throw new DownstreamError('network', (err as Error).message, { cause: err });
    }
  }

  /**
   * A streak of connect failures (refused, unreachable) opens the breaker at once: nothing listens, and
   * after healthy traffic the failure percentage would need as many failures as there were calls.
   */
  #countStreak(err: DownstreamError): void {
    if (err.kind === 'breaker_open') return;
    if (err.kind !== 'network' || !isConnectFailure(err.cause)) {
      this.#networkStreak = 0;
      return;
    }
    const limit = this.config.breaker.networkFailureStreak;
    if (limit > 0 && ++this.#networkStreak >= limit && !this.breaker.opened) {
      this.#networkStreak = 0;
      this.breaker.open();
    }
  }

  async #request(env: RequestEnvelope, timeoutMs: number, traceparent: string | undefined): Promise<DownstreamResponse> {
    const headers: Record<string, string> = { ...env.headers, 'idempotency-key': env.jobId, 'x-request-id': env.requestId };
    if (traceparent) headers.traceparent = traceparent;
    if (env.tracestate) headers.tracestate = env.tracestate;
    const path = this.#basePath + env.path + (env.query ? `?${env.query}` : '');
    // A timer cleared when the call ends, not AbortSignal.timeout(): that one keeps its timer until
    // it fires and then builds a DOMException and dispatches 'abort' for every finished call
    // (measured: ~1% of the dequeuer's CPU under load, deferred by the timeout).
    const controller = new AbortController();
    const signal = controller.signal;
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let res;
    let body: Buffer;
    try {
      try {
        res = await this.#pool.request({
          method: env.method as 'GET',
          path,
          headers,
          body: env.body.length > 0 ? env.body : null,
          signal,
        });
      } catch (err) {
        if (signal.aborted) throw new DownstreamError('timeout', `no response within ${timeoutMs} ms`, { cause: err });
        throw new DownstreamError('network', (err as Error).message, { cause: err });
      }
      body = await this.#readBody(res.body, signal, timeoutMs);
    } finally {
      clearTimeout(timer);
    }
    if (res.statusCode < 200 || res.statusCode > 599) {
      throw new DownstreamError('bad_response', `status ${res.statusCode}`);
    }
    const response: DownstreamResponse = { status: res.statusCode, headers: pickResponseHeaders(res.headers, this.config.forwardResponseHeaders), body };
    if (res.statusCode >= 500) throw new DownstreamError('server_error', `downstream answered ${res.statusCode}`, { response });
    return response;
  }

  /**
   * The whole body, bounded by `maxResponseBytes`. Read with `data`/`end` listeners, not `for await`:
   * the async iterator costs a promise and a stream read per chunk (docs/adr/1404), and a body of
   * one chunk (most are) is returned as it is, without the copy `Buffer.concat` makes.
   */
  #readBody(stream: Readable, signal: AbortSignal, timeoutMs: number): Promise<Buffer> {
    const max = this.config.maxResponseBytes;
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > max) {
          stream.destroy();
          reject(new DownstreamError('bad_response', `response body over ${max} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      stream.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
      stream.once('error', (err: Error) => {
        if (signal.aborted) reject(new DownstreamError('timeout', `response body not complete within ${timeoutMs} ms`, { cause: err }));
        else reject(new DownstreamError('network', `response body failed: ${err.message}`, { cause: err }));
      });
    });
  }

  async close(): Promise<void> {
    this.breaker.shutdown();
    await this.#pool.close();
  }
}

/** Codes of a connection that could not be made at all (nothing listens, no route, no name). */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** True for a failure to connect, as opposed to a peer that answered badly or reset mid-answer. */
export function isConnectFailure(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_FAILURES.has(code)) return true;
    for (const inner of (e as { errors?: unknown[] }).errors ?? []) if (isConnectFailure(inner)) return true;
  }
  return false;
}

function pickResponseHeaders(headers: Record<string, string | string[] | undefined>, allow: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of allow) {
    const v = headers[name];
    if (v !== undefined) out[name] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}
