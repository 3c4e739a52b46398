import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

/** The bound the issue sets for noticing a blackhole at the default heartbeat (10 s). */
const DETECT_BOUND_MS = 12_000;
const INFLIGHT = 20;

interface Answer {
  status: number;
  code: string | undefined;
  startedMs: number;
  endedMs: number;
}

/**
 * Issue 15 (4) / plan F2b: a silent partition between the enqueuer and its broker (the fault proxy
 * drops every byte both ways, sockets stay open) at the default heartbeat of 10 s. Before the fix
 * it went unnoticed for 25-27 s (amqplib needs two to three heartbeats), /readyz stayed true, every
 * new request waited 5 s for its publish timeout, and confirms failed by the closed channel said
 * GW_ERR_QUEUE_FULL.
 */
describe('silent partition enqueuer↔broker (blackhole, default heartbeat)', () => {
  let node: PrivateNode;
  let proxy: FaultProxy;
  let stack: Stack;

  beforeAll(async () => {
    const t = Date.now();
    node = await startPrivateNode();
    process.stderr.write(`[blackhole] private node up in ${Date.now() - t} ms\n`);
    proxy = await startFaultProxy({ targetHost: '127.0.0.1', targetPort: node.amqpPort });
    stack = await Stack.start({
      url: proxy.url(node.url),
      prefix: 'gw',
      // The enqueuer at its defaults (heartbeat 10 s) behind the proxy; the dequeuer straight to the node.
      enqueuerEnv: { HEARTBEAT_S: '10' },
      dequeuerEnv: { RABBITMQ_URL: node.url },
    });
  });
  afterAll(async () => {
    const t = Date.now();
    await proxy?.setMode('pass').catch(() => {});
    await stack?.stop(node.url).catch(() => {});
    await proxy?.close();
    await node?.destroy();
    process.stderr.write(`[blackhole] teardown ${Date.now() - t} ms\n`);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it(`readiness false, in-flight sync ended and new requests refused at once within ${DETECT_BOUND_MS / 1000} s; no 503 says queue-full; serves again after healing`, async () => {
    const base = stack.baseUrl;
    expect((await fetch(`${base}/v1/services/echo/echo`, { method: 'POST', body: 'x' })).status).toBe(200);
    const t0 = Date.now();
    const call = (path: string, wait = 'wait=40'): Promise<Answer> => {
      const startedMs = Date.now() - t0;
      return fetch(`${base}/v1/services/echo${path}`, { method: 'POST', body: 'p', headers: { prefer: wait } }).then(
        async (r) => ({ status: r.status, code: r.status === 200 ? undefined : ((await r.json()) as { code?: string }).code, startedMs, endedMs: Date.now() - t0 }),
        (err: Error) => ({ status: 0, code: err.message, startedMs, endedMs: Date.now() - t0 }),
      );
    };
    // In flight at the dequeuer when the partition starts: their replies will never arrive.
    const inflight = Array.from({ length: INFLIGHT }, () => call('/delay/3000'));
    await until(() => stack.enqueuer.replies.inflight === INFLIGHT, 5000, 'requests in flight');
    await sleep(300);
    const cutMs = Date.now() - t0;
    await proxy.setMode('blackhole');

    // New requests keep arriving during the partition, one every 250 ms.
    const later: Array<Promise<Answer>> = [];
    let notReadyMs = 0;
    while (Date.now() - t0 < cutMs + DETECT_BOUND_MS + 3000) {
      later.push(call('/echo'));
      if (!notReadyMs && !stack.enqueuer.readiness().ready) notReadyMs = Date.now() - t0;
      await sleep(250);
    }
    const readyz = await fetch(`${base}/readyz`);
    const first = await Promise.all(inflight);
    const after = await Promise.all(later);
    const endedMax = Math.max(...first.map((a) => a.endedMs)) - cutMs;
    const detected = notReadyMs ? notReadyMs - cutMs : Infinity;
    // New requests that arrived after detection: answered at once.
    const afterDetect = after.filter((a) => a.startedMs >= notReadyMs);
    const slowest = Math.max(...afterDetect.map((a) => a.endedMs - a.startedMs));
    process.stderr.write(`[blackhole] after detection: ${afterDetect.map((a) => `${a.startedMs}+${a.endedMs - a.startedMs}`).join(' ')}\n`);
    const codes = new Map<string, number>();
    for (const a of [...first, ...after]) codes.set(`${a.status} ${a.code ?? ''}`, (codes.get(`${a.status} ${a.code ?? ''}`) ?? 0) + 1);
    process.stderr.write(`[blackhole] not ready after ${detected} ms; in-flight sync ended within ${endedMax} ms; ` +
      `${afterDetect.length} new requests after detection answered within ${slowest} ms; answers ${JSON.stringify(Object.fromEntries(codes))}\n`);

    expect(detected).toBeLessThanOrEqual(DETECT_BOUND_MS);
    expect(readyz.status).toBe(503);
    for (const a of first) {
      expect(a.status).toBe(503);
      expect(a.code).toBe('GW_ERR_BROKER_UNAVAILABLE');
    }
    expect(endedMax).toBeLessThanOrEqual(DETECT_BOUND_MS);
    expect(afterDetect.length).toBeGreaterThan(4);
    expect(slowest).toBeLessThan(250);
    // Everything during the partition is a 503 broker-unavailable; a closed channel is not a full queue.
    for (const a of after) {
      expect(a.status).toBe(503);
      expect(a.code).toBe('GW_ERR_BROKER_UNAVAILABLE');
    }
    expect(stack.enqueuer.replies.inflight).toBe(0);
    expect(stack.enqueuer.replies.publishPending).toBe(0);

    const healAt = Date.now();
    await proxy.setMode('pass');
    await until(async () => (await call('/echo')).status === 200, 30_000, 'served again after healing');
    process.stderr.write(`[blackhole] serving again ${Date.now() - healAt} ms after healing\n`);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });
});
