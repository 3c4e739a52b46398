import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { Dequeuer } from '../../dequeuer/dequeuer.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { answerCounts, call, faultSuite } from '../support/fault.ts';
import { until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

const REQUESTS = 60;
/** Each call takes this long and the dequeuer takes 2 at a time: most requests wait in the queue. */
const CALL_MS = 150;
const WAIT_S = 5;

interface Outcome {
  key: string;
  requestId: string;
  status: number;
  code: string | undefined;
  at: number;
}

/**
 * Issue 15 (2) / plan F16: the enqueuer's broker connection is reset (the fault proxy sends RSTs)
 * while sync requests wait in the rpc queue. Their clients get 503 at once; the requests must then
 * never reach the downstream (the dequeuer asks whether the requester's reply channel still
 * exists), and each Idempotency-Key stays held while its request could still run, so a client
 * retrying with the key causes exactly one downstream call. Before the fix: calls after the 503 and
 * a second call for every retried key.
 */
describe('sync requests cut off by a lost enqueuer connection', () => {
  const url = brokerUrl();
  let proxy: FaultProxy | undefined;
  const suite = faultSuite({
    url,
    start: async () => {
      proxy = await startFaultProxy({ targetHost: new URL(url).hostname, targetPort: Number(new URL(url).port || 5672) });
      return Stack.start({
        url: proxy.url(url),
        prefix: uniquePrefix('sync cutoff'),
        services: { echo: { url: '{DEMO}', rpc: { prefetch: 2 } } },
        dequeuerEnv: { RABBITMQ_URL: url },
      });
    },
    afterStop: async () => {
      await proxy?.close();
    },
  });

  const send = async (key: string): Promise<Outcome> => {
    const o = await call(`${suite.stack.baseUrl}/v1/services/echo/delay/${CALL_MS}`, {
      method: 'POST', body: key, headers: { 'idempotency-key': key, 'user-agent': key, prefer: `wait=${WAIT_S}`, 'content-type': 'text/plain' },
    });
    if (o.status === 0) throw new Error(`request ${key} failed`);
    // `at` is when the answer arrived (a later downstream call came after the client's 503).
    return { key, requestId: o.requestId, status: o.status, code: o.code, at: o.at + o.ms };
  };

  it(`${REQUESTS} queued requests: 0 downstream calls after a client's 503, 0 double calls when every client retries with its key`, async () => {
    const stack = suite.stack;
    expect((await send('warm-up')).status).toBe(200);
    const keys = Array.from({ length: REQUESTS }, (_, i) => `cut-${i}-${Date.now()}`);
    const first = keys.map((k) => send(k));
    await until(() => stack.enqueuer.replies.inflight >= REQUESTS * 0.75, 10_000, 'requests waiting');
    await proxy!.setMode('reset');
    const outcomes = await Promise.all(first);
    const cut = outcomes.filter((o) => o.status === 503);

    // Every client retries with its key until it gets its answer (409 while the key is held).
    const retried = new Map<string, Array<number>>();
    const retry = async (key: string): Promise<Outcome> => {
      for (;;) {
        const o = await send(key);
        retried.set(key, [...(retried.get(key) ?? []), o.status]);
        if (o.status === 200) return o;
        await sleep(o.status === 409 ? 500 : 300);
      }
    };
    const finals = await Promise.all(cut.map((o) => retry(o.key)));
    await sleep(500);

    const callsOf = (key: string) => stack.demo.calls.filter((c) => c.headers['user-agent'] === key);
    const callsOfRequest = (requestId: string) => stack.demo.calls.filter((c) => c.headers['x-request-id'] === requestId);
    // Downstream calls of a cut-off request that arrived after its client had the 503.
    const late = cut.flatMap((o) => callsOfRequest(o.requestId).filter((c) => c.arrivedAt > o.at));
    // Requests whose call was already running at the downstream when the connection went: their
    // reply was lost with it; a retry after the hold is a second call (at-least-once).
    const running = cut.filter((o) => callsOfRequest(o.requestId).some((c) => c.arrivedAt <= o.at));
    const double = keys.filter((k) => callsOf(k).length > 1);
    const goneMetric = (stack.dequeuer!.metrics as Partial<Dequeuer['metrics']>).requesterGone;
    const gone = (await goneMetric?.get())?.values.find((v) => v.labels.service === 'echo')?.value ?? 0;
    const retryStatuses = new Map<number, number>();
    for (const list of retried.values()) for (const s of list) retryStatuses.set(s, (retryStatuses.get(s) ?? 0) + 1);
    process.stderr.write(`[cutoff] first answers ${JSON.stringify(answerCounts(outcomes))}; cut off ${cut.length}; ` +
      `downstream calls after a 503 ${late.length}; calls running at the cut ${running.length}; keys called twice ${double.length} (${double.filter((k) => !running.some((o) => o.key === k)).length} not running at the cut); skipped as requester gone ${gone}; ` +
      `retry answers ${JSON.stringify(Object.fromEntries(retryStatuses))}\n`);

    expect(cut.length).toBeGreaterThan(REQUESTS / 2);
    for (const o of cut) expect(o.code).toBe('GW_ERR_BROKER_UNAVAILABLE');
    expect(late).toEqual([]);
    // Only the calls in progress at the cut (≤ the dequeuer's prefetch) can be repeated by a retry.
    expect(running.length).toBeLessThanOrEqual(2);
    expect(double.filter((k) => !running.some((o) => o.key === k))).toEqual([]);
    for (const f of finals) expect(f.status).toBe(200);
    // Every other key has exactly one downstream call, the one that answered it.
    for (const k of keys) if (!running.some((o) => o.key === k)) expect(callsOf(k).length).toBe(1);
    expect(gone).toBeGreaterThan(0);
    expect(stack.enqueuer.replies.inflight).toBe(0);
  });
});
