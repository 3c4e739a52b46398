import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Dequeuer } from '../../dequeuer/dequeuer.ts';
import { encodeRequest } from '../../shared/envelope.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { browseDlq, checkJobs, FaultClient, queueMessages, tally } from '../support/fault-run.ts';
import { JobDriver, until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

const GOOD = 1000;
const PER_KIND = 10;
const BIG_BYTES = 16 * 1024 * 1024 - 1;

/**
 * Plan F5: 1,000 good jobs interleaved with poison of 4 kinds: an undecodable envelope, a permanent
 * 400, an always-500, and a 16 MiB − 1 body (its echo is over the 10 MiB response bound: an invalid
 * response). The fifth kind, a job that crashes its worker, is test/integration/crash-loop.test.ts
 * (SIGKILL on every delivery until the delivery limit dead-letters it). 2 dequeuers, defaults.
 */
describe('poison mix among good jobs (plan F5)', () => {
  const url = brokerUrl();
  let stack: Stack;
  let second: Dequeuer;
  let driver: JobDriver;

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('poison') });
    second = new Dequeuer(stack.dequeuerConfig, { logger: stack.logs.logger() });
    await second.start();
    await second.waitUntilReady(30_000);
    driver = await JobDriver.start(url, stack.topology);
  });
  afterAll(async () => {
    await driver?.close();
    await second?.stop().catch(() => {});
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it(`undecodable, 400 and big → DLQ at attempt 1; always-500 → DLQ after exactly 5 attempts with reason rejected; 0 of ${GOOD} good jobs in the DLQ, all processed; the DLQ holds exactly the poison ids`, async () => {
    const client = new FaultClient(stack.baseUrl);
    const n = stack.topology.names;
    const undecodable: string[] = [];
    const big: string[] = [];
    const kind = new Map<string, string>();
    const pending: Array<Promise<unknown>> = [];
    const step = Math.floor(GOOD / PER_KIND);
    for (let i = 0; i < GOOD; i++) {
      pending.push(client.send('/echo', { async: true }));
      if (i % step !== 0) continue;
      pending.push(client.send('/status/400', { async: true }).then((a) => kind.set(a.jobId!, '400')));
      pending.push(client.send('/status/500', { async: true }).then((a) => kind.set(a.jobId!, '500')));
      // Straight into the work queue: no envelope version, garbage body.
      const bad = randomUUID();
      undecodable.push(bad);
      driver.ch.publish(n.workExchange, n.workRoutingKey('echo'), Buffer.from('\u0000not a job'), { messageId: bad, persistent: true, headers: { 'gw-v': 'nope' } });
      if (big.length < 2) {
        const env = { ...driver.envelope('/echo'), body: Buffer.alloc(BIG_BYTES, 0x61) };
        big.push(env.jobId);
        driver.ch.publish(n.workExchange, n.workRoutingKey('echo'), env.body, { ...encodeRequest(env), mandatory: true });
      }
      if (pending.length > 64) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    await driver.ch.waitForConfirms();
    for (const id of undecodable) kind.set(id, 'undecodable');
    for (const id of big) kind.set(id, 'big');
    const good = client.accepted.filter((id) => !kind.has(id));
    const poison = [...kind.keys()];
    const dlqName = n.deadLetterQueue('echo');
    await until(async () => (await queueMessages(url, dlqName)) >= poison.length && checkJobs(stack.demo, good).lost.length === 0, 90_000, 'every poison job dead-lettered and every good job processed');

    const items = await browseDlq(stack.baseUrl, 'echo');
    const dlqIds = items.map((d) => d.id ?? '');
    const calls = (id: string): number => stack.demo.arrivals.filter((a) => a.idempotencyKey === id).length;
    const byKind = (k: string): string[] => poison.filter((id) => kind.get(id) === k);
    const check = checkJobs(stack.demo, good);
    const inQueue = await queueMessages(url, dlqName);
    process.stderr.write(`[F5] DLQ queue ${inQueue} messages; good ${good.length}: processed ${check.processed}, lost ${check.lost.length}, duplicated ${check.duplicated}, in the DLQ ${good.filter((id) => dlqIds.includes(id)).length}; ` +
      `poison ${poison.length}: DLQ ${items.length} (${JSON.stringify(tally(items.map((d) => `${kind.get(d.id ?? '') ?? 'other'} attempts ${d.attempts} ${d.reason}`)))}); ` +
      `calls: 400 ${JSON.stringify(tally(byKind('400').map((id) => String(calls(id)))))}, 500 ${JSON.stringify(tally(byKind('500').map((id) => String(calls(id)))))}, big ${JSON.stringify(tally(byKind('big').map((id) => String(calls(id)))))}, undecodable ${byKind('undecodable').map(calls).reduce((a, b) => a + b, 0)}\n`);

    expect(check.lost).toEqual([]);
    expect(good.filter((id) => dlqIds.includes(id))).toEqual([]);
    // The DLQ holds exactly the poison: the tenant's browse shows the decodable ones; the undecodable
    // carry no tenant, so no tenant's browse shows them, and the queue holds those on top.
    expect([...dlqIds].sort()).toEqual(poison.filter((id) => kind.get(id) !== 'undecodable').sort());
    expect(await queueMessages(url, dlqName)).toBe(poison.length);
    for (const id of byKind('400')) expect(calls(id)).toBe(1);
    for (const id of byKind('big')) expect(calls(id)).toBe(1);
    for (const id of byKind('undecodable')) expect(calls(id)).toBe(0);
    for (const id of byKind('500')) expect(calls(id)).toBe(5);
    for (const d of items) {
      expect(d.reason).toBe('rejected');
      if (kind.get(d.id!) === '500') expect(d.attempts).toBe(5);
      else if (kind.get(d.id!) !== 'undecodable') expect(d.attempts).toBe(1);
    }
    expect(await queueMessages(url, n.workQueue('echo'))).toBe(0);
  });
});
