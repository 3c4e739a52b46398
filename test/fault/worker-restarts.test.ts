import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePorts } from '../../scripts/lib/rabbit-node.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { checkJobs, FaultClient, queueMessages, steadyLoad } from '../support/fault-run.ts';
import { until } from '../support/jobs.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { Stack } from '../support/stack.ts';

const STUB_MS = 200;
const PREFETCH = 20;
const ROUNDS = 5;
/** F3b rounds (each restarts both dequeuers): 3 keep the file near 1 min of the CI budget; 5 measured the same (0 duplicates). */
const ROLLING_ROUNDS = 3;
const ASYNC_PER_S = 30;

/**
 * Plan F3 (a dequeuer SIGKILLed mid-processing, 5 rounds) and F3b (rolling SIGTERM of each dequeuer,
 * 5 rounds, with sync traffic): 2 dequeuer processes, stub 200 ms, the enqueuer in this process.
 */
describe('dequeuer processes killed and restarted (plan F3, F3b)', () => {
  const url = brokerUrl();
  let stack: Stack;
  let dir: string;
  const workers: ServiceProcess[] = [];

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('worker restarts'), startDequeuer: false, services: { echo: { url: '{DEMO}', work: { prefetch: PREFETCH } } } });
    stack.demo.latencyMs = STUB_MS;
    dir = mkdtempSync(join(tmpdir(), 'gw-f3-'));
    const env = {
      PATH: process.env.PATH ?? '', RABBITMQ_URL: url, GW_PREFIX: stack.dequeuerConfig.prefix,
      SERVICES_JSON: JSON.stringify({ services: stack.dequeuerConfig.services }), HOST: '127.0.0.1', HEARTBEAT_S: '5', LOG_LEVEL: 'warn', SHUTDOWN_GRACE_MS: '10000',
    };
    const ports = await freePorts(2);
    for (let i = 0; i < 2; i++) workers.push(new ServiceProcess('dequeuer/main.ts', ports[i]!, env, join(dir, `dequeuer-${i}.log`)));
    await Promise.all(workers.map((w) => w.start()));
  });
  afterAll(async () => {
    for (const w of workers) await w.kill('SIGKILL').catch(() => {});
    await stack?.stop(url);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  const dlq = (): Promise<number> => queueMessages(url, stack.topology.names.deadLetterQueue('echo'));

  it(`F3: one dequeuer SIGKILLed mid-processing ${ROUNDS} times (restarted 2 s later): 0 lost, duplicates ≤ ${ROUNDS} × ${PREFETCH}, redeliveries picked up ≤ 2 s after each kill, 0 dead-lettered`, async () => {
    const client = new FaultClient(stack.baseUrl);
    const load = steadyLoad(client, { asyncPerS: ASYNC_PER_S });
    const kills: number[] = [];
    await sleep(2000);
    for (let round = 0; round < ROUNDS; round++) {
      const w = workers[round % 2]!;
      kills.push(Date.now());
      await w.kill('SIGKILL');
      await sleep(2000);
      await w.start();
      await sleep(500);
    }
    await load.stop();
    await until(() => checkJobs(stack.demo, client.accepted).lost.length === 0, 60_000, 'every accepted job processed');
    const check = checkJobs(stack.demo, client.accepted);
    // A duplicate's second arrival after the kill before it: how long the redelivery took to reach the downstream.
    const pickup: number[] = [];
    for (const [id, n] of check.arrivalsPerJob) {
      if (n < 2) continue;
      const times = stack.demo.arrivals.filter((a) => a.idempotencyKey === id).map((a) => a.arrivedAt).sort((a, b) => a - b);
      const kill = kills.filter((k) => k > times[0]! && k <= times[1]!).at(-1);
      if (kill !== undefined) pickup.push(times[1]! - kill);
    }
    const dead = await dlq();
    process.stderr.write(`[F3] accepted ${client.accepted.length} (${JSON.stringify(client.statuses())}), processed ${check.processed}, lost ${check.lost.length}, duplicated ${check.duplicated} (on arrival; bound ${ROUNDS * PREFETCH}), DLQ ${dead}; ` +
      `redelivery reached the downstream ${Math.min(...pickup)}-${Math.max(...pickup)} ms after its kill\n`);

    expect(check.lost).toEqual([]);
    expect(check.duplicated).toBeGreaterThan(0);
    expect(check.duplicated).toBeLessThanOrEqual(ROUNDS * PREFETCH);
    expect(Math.max(...pickup)).toBeLessThanOrEqual(2000);
    expect(dead).toBe(0);
  });

  it(`F3b: rolling SIGTERM of each dequeuer, ${ROLLING_ROUNDS} rounds, with async jobs and 10 sync/s: 0 lost, 0 duplicates, 0 sync 504s, no shutdown error`, async () => {
    const client = new FaultClient(stack.baseUrl);
    const arrivalsFrom = stack.demo.arrivals.length;
    const load = steadyLoad(client, { asyncPerS: ASYNC_PER_S, syncPerS: 10, wait: 10 });
    await sleep(1500);
    const stops: number[] = [];
    for (let round = 0; round < ROLLING_ROUNDS; round++) {
      for (const w of workers) {
        const t = Date.now();
        await w.kill('SIGTERM');
        stops.push(Date.now() - t);
        await w.start();
      }
    }
    await sleep(1000);
    await load.stop();
    await until(() => checkJobs(stack.demo, client.accepted).lost.length === 0, 60_000, 'every accepted job processed');
    const check = checkJobs(stack.demo, client.accepted);
    const syncAnswers = client.statuses((a) => !a.sent.startsWith('job'));
    const syncArrivals = new Map<string, number>();
    for (const a of stack.demo.arrivals.slice(arrivalsFrom)) if (a.requestId && !client.accepted.includes(a.idempotencyKey ?? '')) syncArrivals.set(a.requestId, (syncArrivals.get(a.requestId) ?? 0) + 1);
    const logs = workers.map((w) => readFileSync(w.logFile, 'utf8')).join('');
    const errors = logs.split('\n').filter((l) => /"level":(50|60)/.test(l));
    process.stderr.write(`[F3b] accepted ${client.accepted.length}, processed ${check.processed}, lost ${check.lost.length}, duplicated ${check.duplicated}; sync ${JSON.stringify(syncAnswers)}, sync calls twice ${[...syncArrivals.values()].filter((n) => n > 1).length}; ` +
      `${stops.length} stops took ${Math.min(...stops)}-${Math.max(...stops)} ms; error log lines ${errors.length}; mismatched ${client.mismatched().length}\n`);

    expect(check.lost).toEqual([]);
    expect(check.duplicated).toBe(0);
    expect([...syncArrivals.values()].filter((n) => n > 1)).toEqual([]);
    for (const a of client.answers) expect([200, 202]).toContain(a.status);
    expect(client.mismatched()).toEqual([]);
    expect(errors).toEqual([]);
    expect(await dlq()).toBe(0);
  });
});
