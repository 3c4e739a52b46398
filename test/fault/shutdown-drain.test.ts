import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { JobDriver, until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

const DRAIN_DELAY_MS = 1500;
/** How often the readiness-following client probes /readyz (a load balancer's health check). */
const PROBE_MS = 100;
const CLIENTS = 8;

/**
 * Issue 15 (3): on stop the enqueuer must be seen not ready for the drain delay while it still
 * serves, then close the listener, then finish in-flight work. A client that follows /readyz (as a
 * load balancer does) meets no refused or reset connection. Before the fix /readyz was never seen
 * false: the listener closed in the same tick as the state change.
 */
describe('shutdown: the enqueuer drains in an order a load balancer can follow; the dequeuer finishes in-flight work', () => {
  const url = brokerUrl();
  const stacks: Stack[] = [];
  afterAll(async () => {
    for (const s of stacks) await s.stop(url).catch(() => {});
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it(`enqueuer: /readyz false ≥ ${DRAIN_DELAY_MS} ms before the listener closes, Connection: close while draining, 0 refused for a readiness-following client, in-flight sync answered`, async () => {
    const stack = await Stack.start({ url, prefix: uniquePrefix('drain enqueuer'), enqueuerEnv: { DRAIN_DELAY_MS: String(DRAIN_DELAY_MS), SHUTDOWN_GRACE_MS: '5000' } });
    stacks.push(stack);
    const base = stack.baseUrl;
    const agent = new Agent({ keepAliveTimeout: 30_000, connections: CLIENTS + 1 });
    let following = true;
    let readyFalseAt = 0;
    const answers = new Map<number, number>();
    const errors: string[] = [];
    let closeHeaders = 0;
    let sentWhileDraining = 0;

    // The load balancer's health check: stops routing here at the first 503 (or failure).
    const probe = (async () => {
      while (following) {
        try {
          const r = await request(`${base}/readyz`, { dispatcher: agent });
          await r.body.dump();
          if (r.statusCode !== 200) {
            readyFalseAt = Date.now();
            following = false;
          }
        } catch (err) {
          errors.push(`readyz: ${(err as Error).message}`);
          following = false;
        }
        await sleep(PROBE_MS);
      }
    })();
    const client = async (): Promise<void> => {
      while (following) {
        if (readyFalseAt === 0 && stack.enqueuer.state === 'draining') sentWhileDraining++;
        try {
          const r = await request(`${base}/v1/services/echo/delay/200`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' }, dispatcher: agent });
          await r.body.dump();
          answers.set(r.statusCode, (answers.get(r.statusCode) ?? 0) + 1);
          if (r.headers.connection === 'close') closeHeaders++;
        } catch (err) {
          errors.push((err as { code?: string }).code ?? (err as Error).message);
        }
      }
    };
    const clients = Array.from({ length: CLIENTS }, () => client());
    await until(() => (answers.get(200) ?? 0) >= 2 * CLIENTS, 15_000, 'traffic flowing');

    const stopAt = Date.now();
    const first = stack.enqueuer.stop();
    const second = stack.enqueuer.stop();
    expect(second).toBe(first);
    expect(stack.enqueuer.readiness().ready).toBe(false);
    await first;
    const stoppedAt = Date.now();
    await Promise.all([probe, ...clients]);
    await agent.close();

    const closedLine = stack.logs.lines.find((l) => l.msg === 'listener closed; finishing in-flight requests');
    const listenerClosedAt = (closedLine?.time as number | undefined) ?? 0;
    process.stderr.write(`[drain] readyz false seen ${readyFalseAt - stopAt} ms after stop; listener closed ${listenerClosedAt - stopAt} ms after stop (${listenerClosedAt - readyFalseAt} ms after readyz false); stopped after ${stoppedAt - stopAt} ms; answers ${JSON.stringify(Object.fromEntries(answers))}; Connection: close ${closeHeaders}; sent while draining ${sentWhileDraining}; errors ${errors.length}\n`);

    // The readiness-following client met no refused or reset connection and saw /readyz fail.
    expect(errors).toEqual([]);
    expect(readyFalseAt).toBeGreaterThan(0);
    expect(closedLine).toBeDefined();
    // Not ready from the stop call on; the listener stays open for the whole delay after that.
    expect(listenerClosedAt - stopAt).toBeGreaterThanOrEqual(DRAIN_DELAY_MS);
    // The prober saw it (within one probe period) with the delay still ahead of it.
    expect(readyFalseAt - stopAt).toBeLessThanOrEqual(PROBE_MS + 200);
    expect(listenerClosedAt - readyFalseAt).toBeGreaterThanOrEqual(DRAIN_DELAY_MS - PROBE_MS - 200);
    // Requests that arrived while draining were served, on sockets told to close.
    expect(closeHeaders).toBeGreaterThan(0);
    expect([...answers.keys()]).toEqual([200]);
    expect(stack.enqueuer.state).toBe('stopped');
    // Order: draining → listener closed → stopped.
    const states = stack.logs.lines.filter((l) => l.msg === 'enqueuer state changed').map((l) => l.state);
    expect(states.slice(-2)).toEqual(['draining', 'stopped']);
    const drainAt = stack.logs.lines.findLast((l) => l.msg === 'enqueuer state changed' && l.state === 'draining')!.time as number;
    const stoppedLineAt = stack.logs.lines.findLast((l) => l.msg === 'enqueuer state changed' && l.state === 'stopped')!.time as number;
    expect(drainAt).toBeLessThanOrEqual(listenerClosedAt);
    expect(listenerClosedAt).toBeLessThanOrEqual(stoppedLineAt);
  });

  it('dequeuer: not ready at once while its listener stays up, an in-flight job finishes once before it closes, a second stop returns the same promise', async () => {
    const stack = await Stack.start({ url, prefix: uniquePrefix('drain dequeuer'), dequeuerEnv: { SHUTDOWN_GRACE_MS: '5000' } });
    stacks.push(stack);
    const jobs = await JobDriver.start(url, stack.topology);
    try {
      const dequeuer = stack.dequeuer!;
      const port = dequeuer.port;
      const jobId = await jobs.publish('/delay/1500');
      await until(() => stack.demo.calls.length === 0 && jobs.final(jobId, 'running'), 10_000, 'job running');
      const first = dequeuer.stop();
      expect(dequeuer.stop()).toBe(first);
      expect(dequeuer.readiness().ready).toBe(false);
      // The listener is still up and says not ready while the job finishes.
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(r.status).toBe(503);
      await first;
      expect(dequeuer.state).toBe('stopped');
      expect(stack.demo.callsByKey().get(jobId)).toBe(1);
      await until(() => jobs.final(jobId, 'succeeded'), 5000, 'succeeded event');
      await expect(fetch(`http://127.0.0.1:${port}/readyz`)).rejects.toThrow();
      // The job was acked before the channel closed: nothing left to redeliver.
      expect((await jobs.ch.checkQueue(stack.topology.names.workQueue('echo'))).messageCount).toBe(0);
      stack.dequeuer = undefined;
    } finally {
      await jobs.close();
    }
  });
});
