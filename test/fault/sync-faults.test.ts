import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { managementGet } from '../../scripts/lib/management.ts';
import { encodeReply } from '../../shared/envelope.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { FaultClient, metricSum, quantile } from '../support/fault-run.ts';
import { until } from '../support/jobs.ts';
import { testManagementUrl } from '../support/management.ts';
import { Stack } from '../support/stack.ts';

const REQUESTS = 1000;
/**
 * Long enough that the downstream (rpc prefetch 64 at a time) drains slower than the client submits,
 * whatever the load: at 100 ms it drained 640/s, and in CI runs the loaded client never had the
 * precondition's 500 waiting (60-170 in flight, 4 of 5 CI runs failed there).
 */
const CALL_MS = 1000;

interface MgmtConnection {
  name: string;
  connected_at: number;
  client_properties?: { connection_name?: string };
}

/** Broker-side close of a connection (what `rabbitmqctl close_connection` does: CONNECTION_FORCED). */
async function closeConnection(mgmt: string, name: string): Promise<void> {
  const base = new URL(mgmt);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  const res = await fetch(`${base.protocol}//${base.host}/api/connections/${encodeURIComponent(name)}`, { method: 'DELETE', headers: { authorization: auth, 'x-reason': 'fault test: close_connection' } });
  if (res.status !== 204) throw new Error(`closing ${name} answered ${res.status}`);
}

/**
 * Plan F16: sync request-reply faults. 1,000 concurrent sync requests (stub 100 ms) while the broker
 * closes the enqueuer's connection; a reply that comes after its request's timeout; the dequeuer
 * replying to requesters that vanished with that connection.
 */
describe('sync request-reply faults (plan F16)', () => {
  const url = brokerUrl();
  let stack: Stack;
  let mgmt: string;
  const startedAt = Date.now();

  beforeAll(async () => {
    mgmt = await testManagementUrl();
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('sync faults'),
      // `late` has no dequeuer: the test answers its requests by hand, late.
      services: { echo: { url: '{DEMO}', rpc: { maxLength: 5000 } }, late: { url: '{DEMO}' } },
      enqueuerEnv: { MAX_INFLIGHT_PER_TENANT: '5000' },
      dequeuerEnv: { CONSUME_SERVICES: 'echo' },
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it(`${REQUESTS} concurrent sync requests, the enqueuer's connection closed by the broker: in-flight 503 within 1 s, 0 wrong bodies, no cut-off request dispatched after the close, no call after a 503 but those already on their way, replies to the vanished requesters harmless, map empty after`, async () => {
    const client = new FaultClient(stack.baseUrl);
    expect((await client.send('/echo')).status).toBe(200);
    const dq = stack.dequeuer!;
    const conns = await until(async () => {
      const all = await managementGet<MgmtConnection[]>(mgmt, '/api/connections');
      const mine = all.filter((c) => c.client_properties?.connection_name?.startsWith('enqueuer@') && c.connected_at >= startedAt - 1000);
      return mine.length > 0 && mine;
    }, 20_000, "the enqueuer's connection in the management API");
    expect(conns).toHaveLength(1);

    // When the dequeuer hands each request to the downstream (after its requester check): the
    // downstream's arrival can come later than the client's 503 for a call dispatched before the close.
    const echo = dq.downstreams.get('echo')!;
    const call = echo.call.bind(echo);
    const dispatchedAt = new Map<string, number>();
    echo.call = (env, ...rest) => {
      dispatchedAt.set(env.requestId, Date.now());
      return call(env, ...rest);
    };
    const pending = Array.from({ length: REQUESTS }, () => client.send(`/delay/${CALL_MS}`, { wait: 30 }));
    await until(() => stack.enqueuer.replies.inflight >= REQUESTS / 2 && stack.demo.arrivals.length > 50, 30_000, 'requests waiting');
    // The broker has closed the connection when the API answers 204: its reader terminates the
    // connection's channels (the requesters' direct reply-to consumers) before it sends the close.
    await closeConnection(mgmt, conns[0]!.name);
    const closeAt = Date.now();
    // The gateway's side: every waiting request failed (its 503 written) this long after the close.
    await until(() => stack.enqueuer.replies.inflight === 0, 5_000, 'every waiting request ended');
    const failedAllMs = Date.now() - closeAt;
    const answers = await Promise.all(pending);
    const cut = answers.filter((a) => a.status === 503);
    const lateAfterCut = cut.map((a) => a.at + a.ms - closeAt);
    await stack.enqueuer.waitUntilReady(30_000);
    // The dequeuer, whose calls running at the cut replied to vanished requesters, serves on.
    const after = await Promise.all(Array.from({ length: 50 }, () => client.send('/echo', { wait: 10 })));
    const callsAfter503 = cut.flatMap((a) => stack.demo.arrivals.filter((c) => c.requestId === a.requestId && c.arrivedAt > a.at + a.ms));
    const afterCloseMs = callsAfter503.map((c) => c.arrivedAt - closeAt);
    // Near misses: calls of cut-off requests that arrived after the close (before or after their client read the 503).
    const cutIds = new Set(cut.map((a) => a.requestId));
    const lateArrivals = stack.demo.arrivals.filter((c) => c.requestId !== undefined && cutIds.has(c.requestId) && c.arrivedAt >= closeAt);
    const afterClose = lateArrivals.map((c) => c.arrivedAt - closeAt);
    const onTheWay = lateArrivals.map((c) => c.arrivedAt - (dispatchedAt.get(c.requestId!) ?? c.arrivedAt));
    // Cut-off requests the dequeuer handed to the downstream, relative to the close (the broker tore the
    // requester's channels down before its 204): none may be dispatched after it.
    const cutDispatch = [...dispatchedAt].filter(([id]) => cutIds.has(id)).map(([, t]) => t - closeAt);
    const dispatchedAfterClose = cutDispatch.filter((ms) => ms > 0);
    const lastDispatch = cutDispatch.length ? Math.max(...cutDispatch) : undefined;
    const gone = await metricSum(dq.metrics.requesterGone, { service: 'echo' });
    const replyErrors = stack.logs.lines.filter((l) => /reply (channel error|dropped)/.test(String(l.msg)));
    process.stderr.write(`[F16 close] answers ${JSON.stringify(client.statuses((a) => answers.includes(a)))}; all waiting requests failed ${failedAllMs} ms after the close; cut-off 503s read by the client ${quantile(lateAfterCut, 0.5)}/${quantile(lateAfterCut, 1)} ms (p50/max) after the close; ` +
      `downstream calls after a 503 ${callsAfter503.length} (${afterCloseMs.join(', ')} ms after the close); calls of cut-off requests arriving after the close ${afterClose.length} (${afterClose.join(', ')} ms; dispatched ${quantile(onTheWay, 0)}-${quantile(onTheWay, 1)} ms before they arrived); cut-off requests dispatched ${cutDispatch.length}, after the close ${dispatchedAfterClose.length}, the last ${lastDispatch} ms from the close; skipped as requester gone ${gone}; reply errors ${replyErrors.length}; after: ${JSON.stringify(client.statuses((a) => after.includes(a)))}; mismatched ${client.mismatched().length}\n`);

    expect(cut.length).toBeGreaterThan(REQUESTS / 4);
    for (const a of cut) expect(a.code).toBe('GW_ERR_BROKER_UNAVAILABLE');
    for (const a of answers) expect([200, 503]).toContain(a.status);
    // ≤ 1 s at the gateway; the client reading 1,000 answers shares this process's 2 loaded cores.
    expect(failedAllMs).toBeLessThanOrEqual(1000);
    expect(Math.max(...lateAfterCut)).toBeLessThanOrEqual(2000);
    expect(client.mismatched()).toEqual([]);
    // The requester check lets no cut-off request through once the broker tore its channel down: none
    // is handed to the downstream after the close (a check that failed open would be).
    expect(dispatchedAfterClose).toEqual([]);
    // What can still arrive after a 503 is a call dispatched before the close and still on its way:
    // at most the rpc prefetch (64 since issue 14; was 32), right at the close. Measured: 0 in 9
    // runs of this timing (the close falls between two waves of the prefetch's 1 s calls); with the
    // close timed on a wave of dispatches (an experiment, 6 runs) 0-47 arrived 1-214 ms after the
    // close, all dispatched 110-198 ms before it (this one process was busy failing and reading ~900
    // 503s), 47 of them after their client's 503 in 1 run. Before the fix: 92, up to seconds later.
    // The key of such a call stays held until its deadline (sync-cutoff.test.ts).
    expect(callsAfter503.length).toBeLessThanOrEqual(stack.dequeuer!.config.services.echo!.rpc.prefetch);
    for (const ms of afterCloseMs) expect(ms).toBeLessThanOrEqual(250);
    expect(gone).toBeGreaterThan(0);
    for (const a of after) expect(a.status).toBe(200);
    expect(replyErrors).toEqual([]);
    expect(dq.readiness().ready).toBe(true);
    expect(stack.enqueuer.replies.inflight).toBe(0);
    expect(await metricSum(stack.enqueuer.metrics.unhandledErrors)).toBe(0);
    expect(await metricSum(dq.metrics.unhandledErrors)).toBe(0);
  });

  it('a reply after its request timed out is dropped and counted; a reply for an unknown id too; the live request gets only its own reply', async () => {
    const client = new FaultClient(stack.baseUrl);
    const conn = await connect(url);
    try {
      const ch = await conn.createChannel();
      const held: ConsumeMessage[] = [];
      await ch.consume(stack.topology.names.rpcQueue('late'), (m) => m && held.push(m), { noAck: false });
      const lateBefore = await metricSum(stack.enqueuer.metrics.lateReplies);
      const timedOut = client.send('/x', { service: 'late', wait: 1 });
      await until(() => held.length === 1, 10_000, 'the request at the fake worker');
      const a = await timedOut;
      expect(a.status).toBe(504);
      // Now the worker answers, after the client's 504: the enqueuer drops it.
      const first = held[0]!;
      const reply = (m: ConsumeMessage, body: string, id = m.properties.messageId as string): void => {
        ch.publish('', m.properties.replyTo as string, Buffer.from(body), encodeReply(id, { status: 200, headers: {}, body: Buffer.from(body) }));
      };
      reply(first, 'late body');
      // A live request gets a stray reply (unknown id) first, then its own.
      const live = client.send('/y', { service: 'late', wait: 10 });
      await until(() => held.length === 2, 10_000, 'the second request at the fake worker');
      reply(held[1]!, 'stray body', 'no-such-request');
      let settled = false;
      void live.then(() => { settled = true; });
      await sleep(300);
      expect(settled).toBe(false);
      reply(held[1]!, 'own body');
      const b = await live;
      ch.ack(first);
      ch.ack(held[1]!);
      const late = (await metricSum(stack.enqueuer.metrics.lateReplies)) - lateBefore;
      process.stderr.write(`[F16 late] timed-out request ${a.status} after ${a.ms} ms; live request ${b.status} body ${JSON.stringify(b.body)}; late replies counted ${late}\n`);
      expect(a.ms).toBeGreaterThanOrEqual(1000);
      expect(a.ms).toBeLessThan(1500);
      expect(b.status).toBe(200);
      expect(b.body).toBe('own body');
      expect(late).toBe(2);
      expect(stack.enqueuer.replies.inflight).toBe(0);
    } finally {
      await conn.close().catch(() => {});
    }
  });
});
