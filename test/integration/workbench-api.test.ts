import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dequeuer } from '../../dequeuer/dequeuer.ts';
import { Enqueuer } from '../../enqueuer/enqueuer.ts';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

const KEY_A = 'gwk_wb-tenant-a-0123456789abcdefghijklmn';
const KEY_A_ECHO = 'gwk_wb-tenant-a-echo-only-0123456789abcd';
const KEY_B = 'gwk_wb-tenant-b-0123456789abcdefghijklmn';
const keys = {
  keys: [
    { id: 'a-ops', sha256: hashKey(KEY_A), tenant: 'a' },
    { id: 'a-echo', sha256: hashKey(KEY_A_ECHO), tenant: 'a', services: ['echo'] },
    { id: 'b-ops', sha256: hashKey(KEY_B), tenant: 'b' },
  ],
};

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * The API the dashboard and DLQ workbench use, against a real broker: cancel (two dequeuer replicas,
 * delayed jobs, reservation released), failures grouped, a group's dry run, a paced replay with
 * attempt reset that empties the group and succeeds, a redirect, discard with a reason, the audit
 * trail read back from the stream by a fresh reader, and tenant/service scoping of all of it.
 */
describe('dashboard and DLQ workbench API: cancel, groups, replays, discards, audit', () => {
  const url = brokerUrl();
  let stack: Stack;
  let second: Dequeuer | undefined;

  const call = async (key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await fetch(`${stack.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  const submit = async (key: string, path: string, headers: Record<string, string> = {}): Promise<string> => {
    const r = await call(key, 'POST', `/v1/services/${path}`, 'x', { prefer: 'respond-async', 'content-type': 'text/plain', ...headers });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    return r.body.id as string;
  };
  const stateOf = async (key: string, id: string): Promise<string> => (await call(key, 'GET', `/v1/jobs/${id}`)).body.state as string;
  const callsOf = (id: string): number => stack.demo.calls.filter((c) => c.idempotencyKey === id).length;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('workbench'),
      // No breaker in the way: the jobs fail on purpose, an opened breaker would pause the replays.
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 2, baseMs: 50, capMs: 100 }, breaker: { volumeThreshold: 1000 } }, spare: { url: '{DEMO}' } },
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys) },
    });
    second = new Dequeuer(stack.dequeuerConfig, { logger: stack.logs.logger() });
    await second.start();
    await second.waitUntilReady(30_000);
  }, 90_000);
  afterAll(async () => {
    await second?.stop().catch(() => {});
    await stack?.stop(url);
  });

  it('cancels delayed jobs on every dequeuer replica: never called, state cancelled, reservation released, audited', async () => {
    const ids = [await submit(KEY_A, 'echo/echo', { 'gw-delay-ms': '1500' }), await submit(KEY_A, 'echo/echo', { 'gw-delay-ms': '1500' }), await submit(KEY_A, 'echo/echo', { 'gw-delay-ms': '1500' })];
    expect(await stack.enqueuer.stores.delayed.count('echo')).toBe(3);
    // Another tenant cannot cancel it (404, as for a job that does not exist).
    expect((await call(KEY_B, 'POST', `/v1/jobs/${ids[0]}/cancel`)).status).toBe(404);
    for (const id of ids.slice(0, 2)) {
      const r = await call(KEY_A, 'POST', `/v1/jobs/${id}/cancel`, { reason: 'not needed' });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ id, state: 'cancelled' });
    }
    expect(await stack.enqueuer.stores.delayed.count('echo')).toBe(1);
    // Both replicas know both cancellations (read from the stream) before the jobs fall due.
    await until(() => (ids.slice(0, 2).every((id) => stack.dequeuer!.cancellations.has('a', id) && second!.cancellations.has('a', id)) ? true : undefined), 5000);
    await until(async () => ((await stateOf(KEY_A, ids[2]!)) === 'succeeded' ? true : undefined), 15_000);
    // The cancelled ones came out of the delay levels by now (same delay) and were skipped.
    await until(() => (stack.logs.lines.filter((l) => l.msg === 'job cancelled by an operator: acked without calling the downstream').length >= 2 ? true : undefined), 10_000);
    expect(ids.map(callsOf)).toEqual([0, 0, 1]);
    for (const id of ids.slice(0, 2)) expect(await stateOf(KEY_A, id)).toBe('cancelled');
    expect((await call(KEY_A, 'POST', `/v1/jobs/${ids[0]}/cancel`)).status).toBe(409);
    expect((await call(KEY_A, 'POST', `/v1/jobs/${ids[2]}/cancel`)).body.code).toBe('GW_ERR_JOB_NOT_CANCELLABLE');
    const audit = await call(KEY_A, 'GET', '/v1/audit?service=echo');
    const cancels = (audit.body.items as Array<{ action: string; ids: string[]; keyId: string; reason?: string }>).filter((e) => e.action === 'cancel');
    expect(cancels.map((e) => e.ids[0]).sort()).toEqual(ids.slice(0, 2).sort());
    expect(cancels[0]).toMatchObject({ keyId: 'a-ops', reason: 'not needed' });
    const timeline = await call(KEY_A, 'GET', `/v1/jobs/${ids[0]}/timeline`);
    expect((timeline.body.items as Array<{ state: string }>).map((e) => e.state)).toEqual(['queued', 'cancelled']);
  }, 60_000);

  it('groups failures, dry-runs a group exactly, replays it paced with attempts reset (all succeed), discards with a reason; all audited and tenant-scoped', async () => {
    // Group 1: 503 twice (attempts spent → dead), then the downstream answers: "fixed" on replay.
    const flaky = [await submit(KEY_A, 'echo/fail-until/2'), await submit(KEY_A, 'echo/fail-until/2'), await submit(KEY_A, 'echo/fail-until/2')];
    // Group 2: a permanent 400.
    const refused = [await submit(KEY_A, 'echo/status/400'), await submit(KEY_A, 'echo/status/400')];
    const bJob = await submit(KEY_B, 'echo/status/400');
    for (const id of [...flaky, ...refused]) await until(async () => (['dead', 'failed'].includes(await stateOf(KEY_A, id)) ? true : undefined), 20_000);
    await until(async () => ((await stateOf(KEY_B, bJob)) === 'failed' ? true : undefined), 20_000);

    const groups = await until(async () => {
      const r = await call(KEY_A, 'GET', '/v1/dlq/echo/groups');
      const items = r.body.items as Array<{ id: string; status: number; code: string; reason: string; count: number; ids: string[]; firstSeenAt: string; lastSeenAt: string }>;
      return items.reduce((n, g) => n + g.count, 0) === 5 ? items : undefined;
    }, 20_000, 200);
    expect(groups.map((g) => [g.status, g.code, g.reason, g.count])).toEqual([[503, 'GW_ERR_DOWNSTREAM_STATUS', 'rejected', 3], [400, 'GW_ERR_DOWNSTREAM_STATUS', 'rejected', 2]]);
    expect(groups[0]!.ids.sort()).toEqual([...flaky].sort());
    expect(Date.parse(groups[0]!.firstSeenAt)).toBeLessThanOrEqual(Date.parse(groups[0]!.lastSeenAt));
    // Tenant B sees only its own group; its key cannot act on A's group id (it is not B's).
    const bGroups = (await call(KEY_B, 'GET', '/v1/dlq/echo/groups')).body.items as Array<{ ids: string[] }>;
    expect(bGroups.map((g) => g.ids)).toEqual([[bJob]]);
    expect((await call(KEY_B, 'POST', '/v1/dlq/echo/replays', { group: groups[0]!.id, dryRun: true })).status).toBe(404);

    const dry = await call(KEY_A, 'POST', '/v1/dlq/echo/replays', { group: groups[0]!.id, dryRun: true });
    expect(dry.body).toMatchObject({ dryRun: true, target: 'echo', auditId: null });
    expect((dry.body.ids as string[]).sort()).toEqual([...flaky].sort());
    // A key limited to echo may not redirect to spare (403); a pace that takes too long is refused.
    expect((await call(KEY_A_ECHO, 'POST', '/v1/dlq/echo/replays', { group: groups[0]!.id, redirectTo: 'spare' })).status).toBe(403);
    expect((await call(KEY_A, 'POST', '/v1/dlq/echo/replays', { group: groups[0]!.id, ratePerS: 0.01 })).status).toBe(400);

    const t0 = Date.now();
    const replay = await call(KEY_A, 'POST', '/v1/dlq/echo/replays', { group: groups[0]!.id, ratePerS: 2, resetAttempts: true, note: 'downstream fixed' });
    const tookMs = Date.now() - t0;
    expect(replay.status, JSON.stringify(replay.body)).toBe(200);
    expect((replay.body.ids as string[]).sort()).toEqual([...flaky].sort());
    // 3 jobs at 2/s: chunks of 2, then 1 one second later.
    expect(tookMs).toBeGreaterThanOrEqual(900);
    for (const id of flaky) await until(async () => ((await stateOf(KEY_A, id)) === 'succeeded' ? true : undefined), 20_000);
    // The group is gone; the other is untouched.
    const after = (await call(KEY_A, 'GET', '/v1/dlq/echo/groups')).body.items as Array<{ id: string; ids: string[] }>;
    expect(after.map((g) => g.id)).toEqual([groups[1]!.id]);

    // Redirect: one of the 400s into spare, where /status/400 fails again (its DLQ), proving where it went.
    const moved = await call(KEY_A, 'POST', '/v1/dlq/echo/replays', { ids: [refused[0]], redirectTo: 'spare' });
    expect(moved.body).toMatchObject({ target: 'spare', ids: [refused[0]] });
    await until(async () => (((await call(KEY_A, 'GET', '/v1/dlq/spare')).body.items as Array<{ id: string }>).some((e) => e.id === refused[0]) ? true : undefined), 20_000, 200);

    // Discard needs a reason; with one it empties the group and is audited.
    expect((await call(KEY_A, 'POST', '/v1/dlq/echo/discards', { group: groups[1]!.id })).status).toBe(400);
    const gone = await call(KEY_A, 'POST', '/v1/dlq/echo/discards', { group: groups[1]!.id, reason: 'bad input, client notified' });
    expect(gone.body).toMatchObject({ action: 'discard', ids: [refused[1]], dryRun: false });
    expect((await call(KEY_A, 'GET', '/v1/dlq/echo')).body.items).toEqual([]);

    const audit = (await call(KEY_A, 'GET', '/v1/audit')).body.items as Array<Record<string, unknown>>;
    expect(audit.slice(0, 3).map((e) => [e.action, e.service, e.target ?? null, e.count, e.reason ?? null])).toEqual([
      ['discard', 'echo', null, 1, 'bad input, client notified'],
      ['replay', 'echo', 'spare', 1, null],
      ['replay', 'echo', null, 3, 'downstream fixed'],
    ]);
    expect(audit[2]).toMatchObject({ keyId: 'a-ops', group: groups[0]!.id, ratePerS: 2, resetAttempts: true });
    // B's trail holds none of A's entries; a key limited to echo may not ask for spare's (403).
    expect((await call(KEY_B, 'GET', '/v1/audit')).body.items).toEqual([]);
    expect((await call(KEY_A_ECHO, 'GET', '/v1/audit?service=spare')).status).toBe(403);

    // Durable: a replica started now reads the same trail back from the stream.
    const fresh = new Enqueuer(stack.enqueuerConfig, { logger: stack.logs.logger() });
    try {
      await fresh.start();
      await fresh.waitUntilReady(30_000);
      const trail = () => fresh.workbench.audit.list('a', { limit: 50, offset: 0 }).items.map((e) => e.id);
      await until(() => (trail().length === audit.length ? true : undefined), 10_000);
      expect(trail()).toEqual(audit.map((e) => e.id));
    } finally {
      await fresh.stop();
    }
  }, 120_000);
});
