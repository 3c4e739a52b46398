import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadDequeuerConfig } from '../../dequeuer/config.ts';
import { Dequeuer } from '../../dequeuer/dequeuer.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { checkJobs, FaultClient, quantile, steadyLoad, type Answer } from '../support/fault-run.ts';
import { until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

/** Stub latency (the plan's 50 ms for F2) and load. */
const STUB_MS = 50;
const ASYNC_PER_S = 30;
const SYNC_PER_S = 10;
/** F2d: one channel's prefetch. */
const PREFETCH = 20;

/**
 * Plan F2a (enqueuer↔broker down), F2c (latency) and F2d (dequeuer↔broker blackhole), through the
 * fault proxy. The enqueuer and dequeuer 1 reach the broker through their own proxies, dequeuer 2
 * directly; async jobs and sync requests flow all the time.
 */
describe('network faults through the fault proxy (plan F2a, F2c, F2d)', () => {
  const url = brokerUrl();
  let enqProxy: FaultProxy;
  let deqProxy: FaultProxy;
  let stack: Stack;
  let direct: Dequeuer;

  beforeAll(async () => {
    const target = { targetHost: new URL(url).hostname, targetPort: Number(new URL(url).port || 5672) };
    enqProxy = await startFaultProxy(target);
    deqProxy = await startFaultProxy(target);
    stack = await Stack.start({
      url: enqProxy.url(url),
      prefix: uniquePrefix('network faults'),
      services: { echo: { url: '{DEMO}', work: { prefetch: PREFETCH } } },
      dequeuerEnv: { RABBITMQ_URL: deqProxy.url(url) },
    });
    direct = new Dequeuer(loadDequeuerConfig({
      RABBITMQ_URL: url, GW_PREFIX: stack.dequeuerConfig.prefix, SERVICES_JSON: JSON.stringify({ services: stack.dequeuerConfig.services }),
      PORT: '0', HOST: '127.0.0.1', HEARTBEAT_S: '5', SHUTDOWN_GRACE_MS: '2000',
    }), { logger: stack.logs.logger() });
    await direct.start();
    await direct.waitUntilReady(30_000);
    stack.demo.latencyMs = STUB_MS;
  });
  afterAll(async () => {
    await enqProxy?.setMode('pass').catch(() => {});
    await deqProxy?.setMode('pass').catch(() => {});
    await direct?.stop().catch(() => {});
    await stack?.stop(url);
    await enqProxy?.close();
    await deqProxy?.close();
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  const settle = async (client: FaultClient): Promise<ReturnType<typeof checkJobs>> => {
    await until(() => checkJobs(stack.demo, client.accepted).lost.length === 0, 60_000, 'every accepted job processed');
    await until(() => stack.enqueuer.replies.publishPending === 0 && stack.enqueuer.replies.inflight === 0, 10_000, 'publish window and correlation map empty');
    return checkJobs(stack.demo, client.accepted);
  };

  it('F2a: enqueuer↔broker down 5 s: in-flight sync end 503 within 1 s, requests during it 503 at once, 0 lost, 0 wrong bodies, window and map 0 after', async () => {
    const client = new FaultClient(stack.baseUrl);
    const load = steadyLoad(client, { asyncPerS: ASYNC_PER_S, syncPerS: SYNC_PER_S, syncPath: '/delay/300' });
    await sleep(3000);
    const downAt = Date.now();
    await enqProxy.setMode('down');
    await sleep(5000);
    await enqProxy.setMode('pass');
    const healedAt = Date.now();
    await stack.enqueuer.waitUntilReady(30_000);
    const readyMs = Date.now() - healedAt;
    await sleep(2000);
    await load.stop();
    const check = await settle(client);

    const inflightAtCut = client.answers.filter((a) => a.at < downAt && a.at + a.ms > downAt && a.status !== 200 && a.status !== 202);
    const during = client.answers.filter((a) => a.at >= downAt + 200 && a.at < healedAt);
    process.stderr.write(`[F2a] answers ${JSON.stringify(client.statuses())}; accepted ${client.accepted.length}, processed ${check.processed}, lost ${check.lost.length}, duplicated ${check.duplicated}; ` +
      `in flight at the cut ended ${inflightAtCut.length} (max ${Math.max(0, ...inflightAtCut.map((a) => a.at + a.ms - downAt))} ms after); during: ${JSON.stringify(client.statuses((a) => during.includes(a)))} max ${Math.max(0, ...during.map((a) => a.ms))} ms; ready ${readyMs} ms after heal; mismatched ${client.mismatched().length}\n`);

    expect(check.lost).toEqual([]);
    expect(client.mismatched()).toEqual([]);
    for (const a of inflightAtCut) {
      expect(a.status).toBe(503);
      expect(a.at + a.ms - downAt).toBeLessThanOrEqual(1000);
    }
    expect(during.length).toBeGreaterThan(0);
    for (const a of during) {
      expect(a.status).toBe(503);
      expect(a.retryAfter).toBeTruthy();
      expect(a.ms).toBeLessThan(1000);
    }
    // Duplicates only from publishes whose confirm was lost with the connection (≤ the window W).
    expect(check.duplicated).toBeLessThanOrEqual(256);
    for (const a of client.answers) expect([200, 202, 503]).toContain(a.status);
  });

  it('F2c: 500 ms latency each way on the enqueuer\'s broker connection for 10 s: 0 errors, sync p99 ≤ base p99 + 1.5 s', async () => {
    const client = new FaultClient(stack.baseUrl);
    const load = steadyLoad(client, { asyncPerS: ASYNC_PER_S, syncPerS: SYNC_PER_S });
    await sleep(4000);
    const slowAt = Date.now();
    await enqProxy.setMode({ latencyMs: 500 });
    await sleep(10_000);
    await enqProxy.setMode('pass');
    const healedAt = Date.now();
    await sleep(2000);
    await load.stop();
    const check = await settle(client);
    const sync = (from: number, to: number): Answer[] => client.answers.filter((a) => !a.sent.startsWith('job') && a.at >= from && a.at < to);
    const baseP99 = quantile(sync(0, slowAt).map((a) => a.ms), 0.99);
    const slowP99 = quantile(sync(slowAt, healedAt).map((a) => a.ms), 0.99);
    process.stderr.write(`[F2c] answers ${JSON.stringify(client.statuses())}; lost ${check.lost.length}, duplicated ${check.duplicated}; sync p99 base ${baseP99} ms, with latency ${slowP99} ms; mismatched ${client.mismatched().length}\n`);

    for (const a of client.answers) expect([200, 202]).toContain(a.status);
    expect(check.lost).toEqual([]);
    expect(check.duplicated).toBe(0);
    expect(client.mismatched()).toEqual([]);
    expect(slowP99).toBeLessThanOrEqual(baseP99 + 1500);
  });

  it(`F2d: dequeuer 1↔broker blackholed 15 s: 0 lost, duplicates ≤ ${PREFETCH}, 0 unknown-delivery-tag closes, dequeuer 2 processes in every 5 s window`, async () => {
    const client = new FaultClient(stack.baseUrl);
    const load = steadyLoad(client, { asyncPerS: ASYNC_PER_S });
    await sleep(3000);
    const holeAt = Date.now();
    await deqProxy.setMode('blackhole');
    await sleep(15_000);
    await deqProxy.setMode('pass');
    const healedAt = Date.now();
    await sleep(3000);
    await load.stop();
    const check = await settle(client);
    await until(() => stack.dequeuer!.readiness().ready, 30_000, 'dequeuer 1 ready again');
    const windows: number[] = [];
    for (let t = holeAt; t + 5000 <= healedAt; t += 5000) windows.push(stack.demo.calls.filter((c) => c.status === 200 && c.at >= t && c.at < t + 5000).length);
    const tagErrors = stack.logs.lines.filter((l) => /unknown delivery tag/i.test(JSON.stringify(l)));
    process.stderr.write(`[F2d] accepted ${client.accepted.length} (${JSON.stringify(client.statuses())}), processed ${check.processed}, lost ${check.lost.length}, duplicated ${check.duplicated}; completed per 5 s window while blackholed ${windows.join(', ')}; unknown-delivery-tag errors ${tagErrors.length}\n`);

    expect(check.lost).toEqual([]);
    expect(check.duplicated).toBeLessThanOrEqual(PREFETCH);
    expect(tagErrors).toEqual([]);
    expect(windows.length).toBeGreaterThanOrEqual(2);
    for (const n of windows) expect(n).toBeGreaterThan(0);
  });
});
