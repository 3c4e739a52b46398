import autocannon, { type Result } from 'autocannon';
import type { RunResult } from './stats.ts';

/** A 1 KiB JSON document (exactly 1024 bytes), the payload of every scenario. */
export const PAYLOAD_1KIB = (() => {
  const head = '{"id":"bench","data":"';
  const tail = '"}';
  return head + 'x'.repeat(1024 - head.length - tail.length) + tail;
})();

export interface HttpLoadOptions {
  url: string;
  connections: number;
  /** Bounded by time (s) … */
  durationS?: number;
  /** … or by count, with `maxDurationS` as the time bound. */
  amount?: number;
  maxDurationS?: number;
  overallRatePerS?: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Status that counts as success (default: any 2xx). */
  expectStatus?: number;
}

/** Runs autocannon and returns the run's figures; requests that did not get `expectStatus` are errors. */
export function httpLoad(o: HttpLoadOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let guard: NodeJS.Timeout | undefined;
    const instance = autocannon(
      {
        url: o.url,
        connections: o.connections,
        method: o.method ?? 'POST',
        headers: o.headers ?? {},
        timeout: 30,
        ...(o.body === undefined ? {} : { body: o.body }),
        ...(o.amount === undefined ? { duration: o.durationS ?? 10 } : { amount: o.amount }),
        ...(o.overallRatePerS === undefined ? {} : { overallRate: o.overallRatePerS }),
      },
      (err, result) => {
        clearTimeout(guard);
        if (err) reject(err);
        else resolve(toRunResult(result, o.expectStatus));
      },
    );
    if (o.amount !== undefined) guard = setTimeout(() => instance.stop(), (o.maxDurationS ?? 600) * 1000);
  });
}

function toRunResult(r: Result, expectStatus: number | undefined): RunResult {
  const ok = expectStatus === undefined ? r['2xx'] : (r.statusCodeStats[String(expectStatus)]?.count ?? 0);
  const answered = Object.values(r.statusCodeStats).reduce((n, s) => n + s.count, 0);
  const durationS = r.duration > 0 ? r.duration : 1;
  return {
    throughputPerS: ok / durationS,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    count: ok,
    // autocannon counts timeouts in `errors` already.
    errors: r.errors + (answered - ok),
    durationS,
  };
}

/** One HTTP request; resolves with its status (used to probe what the enqueuer supports). */
export async function probeStatus(url: string, init: RequestInit): Promise<number> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return res.status;
}
