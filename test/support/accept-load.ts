import type { DemoDownstream } from '../../demo/demo-downstream.ts';
import { until } from './jobs.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface AcceptLoadResult {
  /** Job ids answered 202. */
  accepted: Set<string>;
  /** Count per HTTP status. */
  statuses: Map<number, number>;
  /** 503 answers without `Retry-After`. */
  missingRetryAfter: number;
  /** Longest time to any non-202 answer (ms). */
  slowestRefusalMs: number;
  /** Requests the client gave up on (no answer within 10 s). */
  clientTimeouts: number;
}

/**
 * `clients` concurrent callers POST async jobs (`Prefer: respond-async`) to `/v1/services/echo/echo`
 * until `accept` have been answered 202 or `deadlineMs` passes; a refused caller waits 100 ms.
 * `onAccepted(count)` runs after every 202 (to trigger faults at a share of the load).
 */
export async function runAcceptLoad(o: { baseUrl: string; accept: number; clients: number; deadlineMs: number; onAccepted?: (count: number) => void }): Promise<AcceptLoadResult> {
  const r: AcceptLoadResult = { accepted: new Set(), statuses: new Map(), missingRetryAfter: 0, slowestRefusalMs: 0, clientTimeouts: 0 };
  const deadline = Date.now() + o.deadlineMs;
  let seq = 0;
  const client = async (): Promise<void> => {
    while (r.accepted.size < o.accept && Date.now() < deadline) {
      const t0 = Date.now();
      try {
        const res = await fetch(`${o.baseUrl}/v1/services/echo/echo`, {
          method: 'POST',
          headers: { prefer: 'respond-async', 'content-type': 'text/plain' },
          body: `job ${seq++}`,
          signal: AbortSignal.timeout(10_000),
        });
        r.statuses.set(res.status, (r.statuses.get(res.status) ?? 0) + 1);
        if (res.status === 202) {
          r.accepted.add(((await res.json()) as { id: string }).id);
          o.onAccepted?.(r.accepted.size);
          continue;
        }
        await res.arrayBuffer();
        r.slowestRefusalMs = Math.max(r.slowestRefusalMs, Date.now() - t0);
        if (res.status === 503 && !res.headers.get('retry-after')) r.missingRetryAfter++;
      } catch {
        r.clientTimeouts++;
      }
      await sleep(100); // a refused caller backs off a little, as its Retry-After asks
    }
  };
  await Promise.all(Array.from({ length: o.clients }, client));
  return r;
}

export interface Conservation {
  accepted: number;
  processed: number;
  lost: number;
  /** Downstream calls beyond the first for accepted jobs (at-least-once redeliveries). */
  duplicates: number;
  /** Jobs the downstream saw whose client never got a 202 (confirm lost with a node). */
  unexpected: number;
}

/** Waits up to `timeoutMs` until the demo saw every accepted job (by Idempotency-Key), then counts. */
export async function conservation(demo: DemoDownstream, accepted: Set<string>, timeoutMs: number): Promise<Conservation> {
  const missing = (): number => {
    const called = demo.callsByKey();
    let n = 0;
    for (const id of accepted) if (!called.has(id)) n++;
    return n;
  };
  await until(() => missing() === 0, timeoutMs, 'every accepted job processed').catch(() => undefined);
  const byKey = demo.callsByKey();
  const lost = missing();
  let calls = 0;
  for (const id of accepted) calls += byKey.get(id) ?? 0;
  let unexpected = 0;
  for (const id of byKey.keys()) if (!accepted.has(id)) unexpected++;
  return { accepted: accepted.size, processed: accepted.size - lost, lost, duplicates: calls - (accepted.size - lost), unexpected };
}
