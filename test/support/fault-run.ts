import { connect } from 'amqplib';
import type { DemoDownstream } from '../../demo/demo-downstream.ts';
import { answerCounts, type CallOutcome } from './fault.ts';

/** One HTTP answer a fault scenario's client got (status 0: no answer, the socket failed). */
export interface Answer extends CallOutcome {
  jobId: string | undefined;
  /** The body sent, and whether the answer's body was it (sync echo): a mix-up is a wrong body. */
  sent: string;
  body: string;
}

/**
 * The client side of a fault scenario (RELIABILITY.md §6.1): every request and its outcome, by
 * status and code. Async 202s are the accepted set; the downstream's arrivals are the processed set.
 */
export class FaultClient {
  readonly base: string;
  readonly answers: Answer[] = [];
  readonly accepted: string[] = [];
  #n = 0;

  constructor(base: string) {
    this.base = base;
  }

  async send(path: string, o: { async?: boolean; wait?: number; headers?: Record<string, string>; service?: string } = {}): Promise<Answer> {
    const sent = `${o.async ? 'job' : 'sync'}-${++this.#n}-${Math.random().toString(36).slice(2, 8)}`;
    const prefer = [o.async ? 'respond-async' : '', o.wait !== undefined ? `wait=${o.wait}` : ''].filter(Boolean).join(', ');
    const at = Date.now();
    let a: Answer;
    try {
      const r = await fetch(`${this.base}/v1/services/${o.service ?? 'echo'}${path}`, {
        method: 'POST', body: sent, headers: { 'content-type': 'text/plain', ...(prefer ? { prefer } : {}), ...o.headers },
      });
      const body = await r.text();
      let code: string | undefined;
      if (r.status >= 400) code = (JSON.parse(body) as { code?: string }).code;
      a = { at, ms: Date.now() - at, status: r.status, code, retryAfter: r.headers.get('retry-after'), requestId: r.headers.get('x-request-id') ?? '', jobId: r.headers.get('x-gw-job-id') ?? undefined, sent, body };
    } catch {
      a = { at, ms: Date.now() - at, status: 0, code: undefined, retryAfter: null, requestId: '', jobId: undefined, sent, body: '' };
    }
    this.answers.push(a);
    if (o.async && a.status === 202 && a.jobId) this.accepted.push(a.jobId);
    return a;
  }

  /** Answers by `status code`, e.g. `{ '200 ': 10, '503 GW_ERR_BREAKER_OPEN': 2 }`. */
  statuses(filter: (a: Answer) => boolean = () => true): Record<string, number> {
    return answerCounts(this.answers.filter(filter));
  }

  /** Sync answers whose 200 body is not what that request sent (correlation mix-ups). */
  mismatched(): Answer[] {
    return this.answers.filter((a) => a.status === 200 && !a.sent.startsWith('job') && a.body !== a.sent);
  }
}

export function tally(keys: Iterable<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = (out[k] ?? 0) + 1;
  return out;
}

/** The q-quantile of `values` (nearest rank), 0 when empty. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(sorted.length * q) - 1)] ?? 0;
}

/**
 * The checker (§6.1, total-queue semantics) over accepted job ids and the downstream's arrivals:
 * processed = ids with a 2xx answer, lost = accepted − processed, duplicated = Σ (arrivals − 1)
 * over accepted ids that the downstream saw more than once, counted **on arrival** (a call cut off
 * mid-way by a killed worker counts).
 */
export function checkJobs(demo: DemoDownstream, accepted: readonly string[]): { processed: number; lost: string[]; duplicated: number; arrivalsPerJob: Map<string, number> } {
  const ok = new Set<string>();
  for (const c of demo.calls) if (c.idempotencyKey && c.status >= 200 && c.status < 300) ok.add(c.idempotencyKey);
  const ids = new Set(accepted);
  const arrivalsPerJob = new Map<string, number>();
  for (const a of demo.arrivals) if (a.idempotencyKey && ids.has(a.idempotencyKey)) arrivalsPerJob.set(a.idempotencyKey, (arrivalsPerJob.get(a.idempotencyKey) ?? 0) + 1);
  const lost = accepted.filter((id) => !ok.has(id));
  let duplicated = 0;
  for (const n of arrivalsPerJob.values()) duplicated += n - 1;
  return { processed: accepted.length - lost.length, lost, duplicated, arrivalsPerJob };
}

/** Ready + unacked messages of a queue (AMQP `queue.declare passive`: ready only). */
export async function queueMessages(url: string, queue: string): Promise<number> {
  const conn = await connect(url);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await conn.close().catch(() => {});
  }
}

/** Sum of a prom-client metric's values whose labels include `labels`. */
export async function metricSum(metric: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> }, labels: Record<string, string> = {}): Promise<number> {
  return (await metric.get()).values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((s, v) => s + v.value, 0);
}

/** A steady open-loop load: async jobs and sync requests at fixed rates until `stop()`. */
export function steadyLoad(client: FaultClient, o: { asyncPerS: number; syncPerS?: number; asyncPath?: string; syncPath?: string; wait?: number; service?: string }): { stop(): Promise<void> } {
  const pending: Array<Promise<unknown>> = [];
  let running = true;
  const every = o.syncPerS ? Math.max(1, Math.round(o.asyncPerS / o.syncPerS)) : 0;
  const svc = o.service ? { service: o.service } : {};
  const loop = (async () => {
    for (let n = 0; running; n++) {
      pending.push(client.send(o.asyncPath ?? '/echo', { async: true, ...svc }));
      if (every && n % every === 0) pending.push(client.send(o.syncPath ?? '/echo', { wait: o.wait ?? 10, ...svc }));
      await new Promise((r) => setTimeout(r, 1000 / o.asyncPerS));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await Promise.all(pending);
    },
  };
}

/** One dead letter as the DLQ API shows it. */
export interface DeadLetterView {
  id: string;
  attempts: number | null;
  reason: string | null;
  lastError: string | null;
}

/** The first 500 dead letters of a service through the DLQ API (a browse leaves the DLQ as it was). */
export async function browseDlq(base: string, service: string): Promise<DeadLetterView[]> {
  const r = await fetch(`${base}/v1/dlq/${service}?limit=500`);
  const body = await r.json() as { items?: DeadLetterView[] };
  if (!r.ok || !body.items) throw new Error(`DLQ browse of ${service} answered ${r.status}: ${JSON.stringify(body).slice(0, 300)}`);
  return body.items;
}

/** Warn and error log lines by message, from line `from` on (a scenario's report shows them). */
export function warnings(lines: ReadonlyArray<Record<string, unknown>>, from = 0): Record<string, number> {
  return tally(lines.slice(from).filter((l) => Number(l.level) >= 40).map((l) => String(l.msg)));
}
