import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'amqplib';
import { encodeRequest, type RequestEnvelope } from '../../shared/envelope.ts';
import { jobLane, type Topology } from '../../shared/topology/topology.ts';

/** One call as the paced downstream saw it. The job body is `<tenant> <tag>` (e.g. `a 17`, `h 3`). */
export interface PacedCall {
  tenant: string;
  tag: string;
  arrivedAt: number;
  endedAt: number;
  status: number;
  /** Calls being served (not rejected) when this one arrived, itself included. */
  concurrent: number;
  /** Calls of the same tenant being served when it arrived, itself included. */
  tenantConcurrent: number;
}

export interface PacedDownstreamOptions {
  /** Service time of an accepted call (ms). */
  latencyMs: number;
  /** Above this many concurrent calls a new call is answered 503 at once (capacity-limited service). */
  rejectAbove?: number;
}

/**
 * A capacity-limited downstream for the fairness, priority and pacing tests: every call takes
 * `latencyMs`; with `rejectAbove` it answers 503 beyond that concurrency; `answerNext(status, headers)`
 * makes the next call answer that at once (e.g. 429 + Retry-After). It records every call.
 */
export class PacedDownstream {
  readonly calls: PacedCall[] = [];
  readonly server: Server;
  readonly #o: PacedDownstreamOptions;
  #active = 0;
  readonly #activeByTenant = new Map<string, number>();
  #next: { status: number; headers: Record<string, string> } | undefined;

  constructor(options: PacedDownstreamOptions) {
    this.#o = options;
    this.server = createServer((req, res) => void this.#handle(req, res));
    this.server.keepAliveTimeout = 30_000;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  listen(): Promise<this> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(this)));
  }

  /** The next call is answered `status` with `headers` at once. */
  answerNext(status: number, headers: Record<string, string> = {}): void {
    this.#next = { status, headers };
  }

  /** Successful calls (2xx) by tag prefix. */
  succeeded(filter: (c: PacedCall) => boolean = () => true): PacedCall[] {
    return this.calls.filter((c) => c.status === 200 && filter(c));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const arrivedAt = Date.now();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const [tenant = '', tag = ''] = Buffer.concat(chunks).toString('utf8').split(' ');
    const record = (status: number, concurrent: number, tenantConcurrent: number): void => {
      this.calls.push({ tenant, tag, arrivedAt, endedAt: Date.now(), status, concurrent, tenantConcurrent });
    };
    const forced = this.#next;
    if (forced) {
      this.#next = undefined;
      record(forced.status, this.#active, this.#activeByTenant.get(tenant) ?? 0);
      res.writeHead(forced.status, forced.headers).end();
      return;
    }
    if (this.#o.rejectAbove !== undefined && this.#active >= this.#o.rejectAbove) {
      record(503, this.#active, this.#activeByTenant.get(tenant) ?? 0);
      res.writeHead(503).end();
      return;
    }
    this.#active++;
    const mine = (this.#activeByTenant.get(tenant) ?? 0) + 1;
    this.#activeByTenant.set(tenant, mine);
    const concurrent = this.#active;
    await new Promise((r) => setTimeout(r, this.#o.latencyMs));
    this.#active--;
    this.#activeByTenant.set(tenant, (this.#activeByTenant.get(tenant) ?? 1) - 1);
    record(200, concurrent, mine);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/**
 * Submits async jobs through the enqueuer with `clients` concurrent callers: body `<tenant> <i>`,
 * resolves the accepted job ids (every answer must be 202).
 */
export async function submitJobs(o: { baseUrl: string; service: string; key: string; tenant: string; count: number; clients?: number; headers?: Record<string, string>; tag?: (i: number) => string }): Promise<string[]> {
  const ids: string[] = new Array<string>(o.count);
  let next = 0;
  const client = async (): Promise<void> => {
    for (let i = next++; i < o.count; i = next++) {
      const res = await fetch(`${o.baseUrl}/v1/services/${o.service}/job`, {
        method: 'POST',
        headers: { prefer: 'respond-async', 'content-type': 'text/plain', authorization: `Bearer ${o.key}`, ...o.headers },
        body: `${o.tenant} ${o.tag ? o.tag(i) : String(i)}`,
      });
      const body = (await res.json()) as { id?: string };
      if (res.status !== 202 || !body.id) throw new Error(`job ${i} of ${o.tenant} answered ${res.status}: ${JSON.stringify(body)}`);
      ids[i] = body.id;
    }
  };
  await Promise.all(Array.from({ length: o.clients ?? 16 }, client));
  return ids;
}

/**
 * Publishes a backlog of async jobs straight to the broker (confirmed), into the lane the enqueuer
 * picks for `tenant` (and `priority`): thousands in well under a second, where HTTP takes tens.
 */
export async function publishBacklog(o: { url: string; topology: Topology; service: string; tenant: string; count: number; priority?: 'high'; tag?: (i: number) => string }): Promise<void> {
  const conn = await connect(o.url);
  try {
    const ch = await conn.createConfirmChannel();
    const n = o.topology.names;
    const key = n.workRoutingKey(o.service, jobLane(o.topology, { service: o.service, tenant: o.tenant, priority: o.priority }));
    for (let i = 0; i < o.count; i++) {
      const env: RequestEnvelope = {
        jobId: randomUUID(), requestId: randomUUID(), service: o.service, mode: 'async', method: 'POST', path: '/job', query: '',
        headers: { 'content-type': 'text/plain' }, tenant: o.tenant, attempt: 1, enqueuedAt: Date.now(),
        body: Buffer.from(`${o.tenant} ${o.tag ? o.tag(i) : String(i)}`), ...(o.priority ? { priority: o.priority } : {}),
      };
      ch.publish(n.workExchange, key, env.body, { ...encodeRequest(env), mandatory: true });
      if (i % 500 === 499) await ch.waitForConfirms();
    }
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}
