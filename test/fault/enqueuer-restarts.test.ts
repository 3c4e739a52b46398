import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePorts } from '../../scripts/lib/rabbit-node.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { checkJobs, quantile, tally } from '../support/fault-run.ts';
import { until } from '../support/jobs.ts';
import { ServiceProcess } from '../support/service-process.ts';
import { Stack } from '../support/stack.ts';

const ROUNDS = 3;
const DRAIN_DELAY_MS = 1000;
/** The balancer's health check period (a load balancer probing /readyz). */
const PROBE_MS = 100;
const STUB_MS = 100;
const ASYNC_PER_S = 30;
const SYNC_PER_S = 10;

/** An enqueuer process behind the test's balancer. */
class EnqueuerProcess extends ServiceProcess {
  /** What the balancer's last probe saw. */
  ready = false;

  constructor(port: number, env: Record<string, string>, logFile: string) {
    super('enqueuer/main.ts', port, env, logFile);
  }
}

/**
 * Plan F3b, the enqueuer's part: rolling SIGTERM of two enqueuer processes (each drains: not ready
 * for DRAIN_DELAY_MS while still serving, then closes), behind a round-robin balancer that routes only
 * to instances whose /readyz its last probe saw 200. The dequeuer and the downstream run here.
 */
describe('enqueuer processes restarted one at a time behind a readiness-following balancer (plan F3b)', () => {
  const url = brokerUrl();
  let stack: Stack;
  let dir: string;
  const instances: EnqueuerProcess[] = [];

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('enqueuer restarts') });
    stack.demo.latencyMs = STUB_MS;
    dir = mkdtempSync(join(tmpdir(), 'gw-f3b-'));
    const env = {
      PATH: process.env.PATH ?? '', RABBITMQ_URL: url, GW_PREFIX: stack.dequeuerConfig.prefix, SERVICES_JSON: JSON.stringify({ services: stack.dequeuerConfig.services }),
      HOST: '127.0.0.1', HEARTBEAT_S: '5', LOG_LEVEL: 'warn', DRAIN_DELAY_MS: String(DRAIN_DELAY_MS), SHUTDOWN_GRACE_MS: '10000', AUTH_MODE: 'none',
    };
    const ports = await freePorts(2);
    for (let i = 0; i < 2; i++) instances.push(new EnqueuerProcess(ports[i]!, env, join(dir, `enqueuer-${i}.log`)));
    await Promise.all(instances.map((e) => e.start()));
  });
  afterAll(async () => {
    for (const e of instances) await e.kill('SIGKILL').catch(() => {});
    await stack?.stop(url);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it(`${ROUNDS} rounds of SIGTERM to each enqueuer (drain delay ${DRAIN_DELAY_MS} ms) under ${ASYNC_PER_S} jobs/s and ${SYNC_PER_S} sync/s: 0 refused or reset connections, every answer 200/202, 0 accepted jobs lost, 0 duplicates, every stop exits 0`, async () => {
    const agent = new Agent({ keepAliveTimeout: 30_000, connections: 64 });
    let running = true;
    // The balancer's health checks: an instance is routed to only while its last probe said ready.
    const probes = instances.map(async (e) => {
      while (running) {
        try {
          const r = await request(`${e.base}/readyz`, { dispatcher: agent });
          await r.body.dump();
          e.ready = r.statusCode === 200;
        } catch {
          e.ready = false;
        }
        await sleep(PROBE_MS);
      }
    });
    await until(() => instances.every((e) => e.ready), 5_000, 'both enqueuers in rotation');
    let next = 0;
    const pick = (): EnqueuerProcess | undefined => {
      for (let i = 0; i < instances.length; i++) {
        const e = instances[next++ % instances.length]!;
        if (e.ready) return e;
      }
      return undefined;
    };
    const accepted: string[] = [];
    const statuses: string[] = [];
    const errors: string[] = [];
    const syncMs: number[] = [];
    let noneReady = 0;
    const send = async (mode: 'async' | 'sync', n: number): Promise<void> => {
      const e = pick();
      if (!e) {
        noneReady++;
        return;
      }
      const at = Date.now();
      try {
        const body = `${mode}-${n}`;
        const r = await request(`${e.base}/v1/services/echo/echo`, {
          method: 'POST', body, dispatcher: agent,
          headers: { 'content-type': 'text/plain', prefer: mode === 'async' ? 'respond-async' : 'wait=10' },
        });
        const text = await r.body.text();
        statuses.push(`${mode} ${r.statusCode}`);
        if (mode === 'async' && r.statusCode === 202) accepted.push(r.headers['x-gw-job-id'] as string);
        if (mode === 'sync') {
          syncMs.push(Date.now() - at);
          if (r.statusCode === 200 && text !== body) errors.push(`sync ${n}: wrong body`);
        }
      } catch (err) {
        errors.push(`${mode} to :${e.port}: ${(err as { code?: string }).code ?? (err as Error).message}`);
      }
    };
    const pending: Array<Promise<void>> = [];
    const load = (async () => {
      for (let n = 0; running; n++) {
        pending.push(send('async', n));
        if (n % Math.round(ASYNC_PER_S / SYNC_PER_S) === 0) pending.push(send('sync', n));
        await sleep(1000 / ASYNC_PER_S);
      }
    })();

    await sleep(1500);
    const stops: number[] = [];
    const startedAt = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      for (const e of instances) {
        const t = Date.now();
        await e.kill('SIGTERM');
        stops.push(Date.now() - t);
        await e.start();
        // Both in rotation again before the next one stops (a rolling restart's health gate).
        await until(() => e.ready, 5_000, 'the restarted enqueuer back in rotation');
      }
    }
    const rollingMs = Date.now() - startedAt;
    await sleep(1000);
    running = false;
    await load;
    await Promise.all([...pending, ...probes]);
    await agent.close();

    await until(() => checkJobs(stack.demo, accepted).lost.length === 0, 30_000, 'every accepted job processed');
    const check = checkJobs(stack.demo, accepted);
    const logs = instances.map((e) => readFileSync(e.logFile, 'utf8')).join('');
    const errorLines = logs.split('\n').filter((l) => /"level":(50|60)/.test(l));
    process.stderr.write(`[F3b enqueuer] ${stops.length} SIGTERMs in ${rollingMs} ms, each stop ${Math.min(...stops)}-${Math.max(...stops)} ms; answers ${JSON.stringify(tally(statuses))}; ` +
      `refused/reset ${errors.length} ${JSON.stringify(errors.slice(0, 5))}; no instance ready ${noneReady}; sync p50/max ${quantile(syncMs, 0.5)}/${quantile(syncMs, 1)} ms; ` +
      `accepted ${accepted.length}, processed ${check.processed}, lost ${check.lost.length}, duplicated ${check.duplicated}; exit codes ${JSON.stringify(instances.map((e) => e.exitCodes))}; error log lines ${errorLines.length}\n`);

    expect(errors).toEqual([]);
    for (const s of statuses) expect(['async 202', 'sync 200']).toContain(s);
    expect(accepted.length).toBeGreaterThan(ROUNDS * 2 * ASYNC_PER_S);
    expect(check.lost).toEqual([]);
    expect(check.duplicated).toBe(0);
    // One instance always stayed in rotation.
    expect(noneReady).toBe(0);
    for (const e of instances) expect(e.exitCodes).toEqual(Array.from({ length: ROUNDS }, () => 0));
    // A stop takes the drain delay, then finishes in-flight work (sync calls of STUB_MS).
    for (const ms of stops) expect(ms).toBeGreaterThanOrEqual(DRAIN_DELAY_MS);
    expect(errorLines).toEqual([]);
  });
});
