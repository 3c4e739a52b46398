import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { appendFileSync } from 'node:fs';

/** One call the demo downstream received. */
export interface DemoCall {
  /** When the answer was sent (ms). */
  at: number;
  /** When the request arrived (ms): duplicates and late calls are counted on arrival. */
  arrivedAt: number;
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  status: number;
}

/** A call as it arrived (recorded before any answer, so calls cut off mid-way are counted too). */
export interface DemoArrival {
  arrivedAt: number;
  path: string;
  idempotencyKey: string | undefined;
  requestId: string | undefined;
}

export interface DemoDownstreamOptions {
  /** Appends one JSON line per call (for tests that run the demo in another process). */
  ledgerFile?: string;
}

/**
 * The demo downstream used by the walkthrough, the tests and the benchmarks.
 * - `/echo`: 200 with the request's body and content type
 * - `/delay/:ms`: the same after a pause
 * - `/status/:code`: that status (`?retry-after=S` adds the header)
 * - `/flaky/:percent`: 503 that percent of the time, else echo
 * - `/fail-until/:n`: 503 for the first n calls with one Idempotency-Key, then echo
 * - `/hang-first/:ms`: the first call with one Idempotency-Key answers after `ms`, later ones at once
 * - `/headers`: the request headers as JSON
 * Every call is recorded with its Idempotency-Key so tests can count duplicates.
 */
export class DemoDownstream {
  readonly calls: DemoCall[] = [];
  /** Every call on arrival, answered or not (a worker killed mid-call leaves one here, none in `calls`). */
  readonly arrivals: DemoArrival[] = [];
  readonly server: Server;
  #options: DemoDownstreamOptions;
  #attemptsByKey = new Map<string, number>();
  /** While true every call answers 503 (simulates an outage). */
  down = false;
  /** Added before every answer (ms): a slow downstream. */
  latencyMs = 0;

  constructor(options: DemoDownstreamOptions = {}) {
    this.#options = options;
    this.server = createServer((req, res) => this.#handle(req, res));
    this.server.keepAliveTimeout = 30_000;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  listen(port = 0, host = '127.0.0.1'): Promise<this> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve(this));
    });
  }

  /** Stops listening; calls in flight get up to `graceMs` to finish before sockets are destroyed. */
  async close(graceMs = 0): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      if (graceMs <= 0) this.server.closeAllConnections();
      else setTimeout(() => this.server.closeAllConnections(), graceMs).unref();
    });
  }

  /** Calls per Idempotency-Key. */
  callsByKey(): Map<string, number> {
    const m = new Map<string, number>();
    for (const c of this.calls) if (c.idempotencyKey) m.set(c.idempotencyKey, (m.get(c.idempotencyKey) ?? 0) + 1);
    return m;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const arrivedAt = Date.now();
    this.arrivals.push({ arrivedAt, path: (req.url ?? '/').split('?')[0]!, idempotencyKey: req.headers['idempotency-key'] as string | undefined, requestId: req.headers['x-request-id'] as string | undefined });
    if (this.arrivals.length > 1_000_000) this.arrivals.splice(0, 500_000);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (this.latencyMs > 0) {
        const timer = setTimeout(() => this.#answer(req, res, arrivedAt, chunks), this.latencyMs);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      this.#answer(req, res, arrivedAt, chunks);
    });
  }

  #answer(req: IncomingMessage, res: ServerResponse, arrivedAt: number, chunks: Buffer[]): void {
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://demo');
    const key = req.headers['idempotency-key'] as string | undefined;
    const send = (status: number, payload: Buffer | string, contentType?: string, extra: Record<string, string> = {}): void => {
      this.#record({ at: Date.now(), arrivedAt, method: req.method ?? 'GET', path: url.pathname, idempotencyKey: key, headers: req.headers, status });
      res.statusCode = status;
      if (contentType) res.setHeader('content-type', contentType);
      for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
      res.end(payload);
    };
    const echo = (): void => send(200, body, req.headers['content-type'] ?? 'application/octet-stream');
    const [, route, arg] = url.pathname.split('/');
    if (this.down) return send(503, '{"error":"down"}', 'application/json');
    switch (route) {
      case 'echo':
        return echo();
      case 'headers':
        return send(200, JSON.stringify(req.headers), 'application/json');
      case 'delay': {
        const ms = Math.min(Number(arg) || 0, 600_000);
        const timer = setTimeout(echo, ms);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      case 'status': {
        const code = Number(arg);
        if (!Number.isInteger(code) || code < 200 || code > 599) return send(400, 'bad status', 'text/plain');
        const retryAfter = url.searchParams.get('retry-after');
        return send(code, JSON.stringify({ status: code }), 'application/json', retryAfter ? { 'retry-after': retryAfter } : {});
      }
      case 'flaky':
        return Math.random() * 100 < Number(arg) ? send(503, '{"error":"flaky"}', 'application/json') : echo();
      case 'fail-until': {
        const n = this.#attemptsByKey.get(key ?? '') ?? 0;
        this.#attemptsByKey.set(key ?? '', n + 1);
        return n < Number(arg) ? send(503, JSON.stringify({ attempt: n + 1 }), 'application/json') : echo();
      }
      case 'hang-first': {
        const n = this.#attemptsByKey.get(key ?? '') ?? 0;
        this.#attemptsByKey.set(key ?? '', n + 1);
        if (n > 0) return echo();
        const timer = setTimeout(echo, Math.min(Number(arg) || 0, 600_000));
        res.on('close', () => clearTimeout(timer));
        return;
      }
      default:
        return send(404, 'not found', 'text/plain');
    }
  }

  #record(call: DemoCall): void {
    this.calls.push(call);
    if (this.calls.length > 1_000_000) this.calls.splice(0, 500_000);
    if (this.#options.ledgerFile) {
      appendFileSync(this.#options.ledgerFile, JSON.stringify({ at: call.at, arrivedAt: call.arrivedAt, method: call.method, path: call.path, key: call.idempotencyKey, status: call.status }) + '\n');
    }
  }
}
