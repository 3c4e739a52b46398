import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

const KEY_A = 'gwk_iso-tenant-a-0123456789abcdefghijkl';
const KEY_B = 'gwk_iso-tenant-b-0123456789abcdefghijkl';
const keys = { keys: [{ id: 'a-main', sha256: hashKey(KEY_A), tenant: 'a' }, { id: 'b-main', sha256: hashKey(KEY_B), tenant: 'b' }] };
/** Headers a client might use to claim another tenant; the gateway must ignore every one. */
const SPOOF = { 'x-tenant': 'a', 'gw-tenant': 'a', tenant: 'a', 'x-gw-tenant': 'a' };
const VARIANTS: Array<[string, Record<string, string>]> = [['plain', {}], ['spoofed', SPOOF]];

interface Answer {
  status: number;
  body: Record<string, unknown>;
}
interface StreamedEvent {
  event: string;
  data: { id?: string; state?: string };
}

/** An SSE stream read in the background with an API key, until `close()`. */
function openEvents(url: string, key: string): { events: StreamedEvent[]; status: Promise<number>; close: () => void } {
  const ac = new AbortController();
  const events: StreamedEvent[] = [];
  const status = fetch(url, { signal: ac.signal, headers: { accept: 'text/event-stream', authorization: `Bearer ${key}` } }).then((res) => {
    void (async () => {
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for await (const chunk of res.body!) {
          buffer += decoder.decode(chunk as Uint8Array, { stream: true });
          for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) events.push({ event, data: JSON.parse(data) as StreamedEvent['data'] });
          }
        }
      } catch (err) {
        if ((err as Error).name !== 'AbortError') throw err;
      }
    })();
    return res.status;
  });
  return { events, status, close: () => ac.abort() };
}

describe('tenant isolation: tenant B cannot read, list, stream, replay or discard tenant A\'s jobs and DLQ entries', () => {
  const url = brokerUrl();
  let stack: Stack;
  let conn: ChannelModel;
  let attempts = 0;
  let denied = 0;
  /** One cross-tenant attempt: counted, and asserted denied. */
  const crossTenant = (what: string, wasDenied: boolean): void => {
    attempts++;
    if (wasDenied) denied++;
    expect(wasDenied, what).toBe(true);
  };
  const call = async (key: string | undefined, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${stack.baseUrl}${path}`, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  const submit = async (key: string, path: string, headers: Record<string, string> = {}): Promise<string> => {
    const r = await call(key, 'POST', `/v1/services/echo${path}`, { prefer: 'respond-async', ...headers }, `body-${randomUUID()}`);
    expect(r.status).toBe(202);
    return r.body.id as string;
  };
  const stateOf = async (key: string, id: string): Promise<string | undefined> => {
    const r = await call(key, 'GET', `/v1/jobs/${id}`);
    return r.status === 200 ? (r.body.state as string) : undefined;
  };
  const listIds = async (key: string, query: string, headers: Record<string, string> = {}): Promise<string[]> => {
    const r = await call(key, 'GET', `/v1/jobs?limit=100${query}`, headers);
    expect(r.status).toBe(200);
    expect(r.body.next).toBeNull();
    return (r.body.items as Array<{ id: string }>).map((j) => j.id);
  };
  const dlqIds = async (key: string, headers: Record<string, string> = {}): Promise<string[]> => {
    const r = await call(key, 'GET', '/v1/dlq/echo?limit=500', headers);
    expect(r.status).toBe(200);
    return (r.body.items as Array<{ id: string }>).map((e) => e.id);
  };
  const dlqCount = async (): Promise<number> => {
    const ch = await conn.createChannel();
    try {
      return (await ch.checkQueue(stack.topology.names.deadLetterQueue('echo'))).messageCount;
    } finally {
      await ch.close();
    }
  };

  const aDone: string[] = [];
  const aFailed: string[] = [];
  const aSlow: string[] = [];
  const bOwn: string[] = [];
  let bFailed = '';
  let aStream: ReturnType<typeof openEvents>;
  let bStream: ReturnType<typeof openEvents>;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('tenant isolation'),
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 2, baseMs: 50, capMs: 100 }, breaker: { volumeThreshold: 100_000 } } },
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys) },
    });
    conn = await connect(url);
    aStream = openEvents(`${stack.baseUrl}/v1/events`, KEY_A);
    bStream = openEvents(`${stack.baseUrl}/v1/events`, KEY_B);
    expect(await aStream.status).toBe(200);
    expect(await bStream.status).toBe(200);
    // A's jobs: some succeed, some fail permanently (400 → DLQ), some are still running while B probes.
    for (let i = 0; i < 4; i++) aSlow.push(await submit(KEY_A, '/delay/2500'));
    for (let i = 0; i < 6; i++) aDone.push(await submit(KEY_A, '/echo'));
    for (let i = 0; i < 5; i++) aFailed.push(await submit(KEY_A, '/status/400'));
    bOwn.push(await submit(KEY_B, '/echo'));
    bFailed = await submit(KEY_B, '/status/400');
    bOwn.push(bFailed);
  });
  afterAll(async () => {
    aStream?.close();
    bStream?.close();
    await conn?.close().catch(() => undefined);
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('answers B 404 (the same problem as an unknown id) for GET /v1/jobs/:id and SSE /v1/jobs/:id/events of each of A\'s jobs, also while they run and with tenant headers', async () => {
    const unknown = await call(KEY_B, 'GET', `/v1/jobs/${randomUUID()}`);
    expect(unknown.status).toBe(404);
    // While A's slow jobs are queued or running.
    expect(await stateOf(KEY_A, aSlow[0]!)).toMatch(/^(queued|running)$/);
    for (const id of [...aSlow, ...aDone, ...aFailed]) {
      for (const [variant, headers] of VARIANTS) {
        const r = await call(KEY_B, 'GET', `/v1/jobs/${id}`, headers);
        crossTenant(`GET job ${variant}`, r.status === 404 && r.body.code === unknown.body.code);
        const sse = await fetch(`${stack.baseUrl}/v1/jobs/${id}/events`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${KEY_B}`, ...headers } });
        const problem = (await sse.json()) as { code: string };
        crossTenant(`SSE job ${variant}`, sse.status === 404 && problem.code === 'GW_ERR_JOB_NOT_FOUND');
      }
      // A few without any key (more would trip the per-IP failed-authentication throttle).
      if (aSlow.includes(id)) crossTenant('GET job without a key', (await call(undefined, 'GET', `/v1/jobs/${id}`, SPOOF)).status === 401);
    }
    // Control: the owner reads them all.
    for (const id of [...aSlow, ...aDone, ...aFailed]) expect(await stateOf(KEY_A, id)).toBeDefined();
  });

  it('shows B none of A\'s jobs in any list and none of A\'s transitions on /v1/events, while A\'s stream has them all', async () => {
    const aAll = [...aSlow, ...aDone, ...aFailed];
    await until(async () => {
      const states = await Promise.all([...aAll, ...bOwn].map(async (id) => stateOf(bOwn.includes(id) ? KEY_B : KEY_A, id)));
      return states.every((s) => s === 'succeeded' || s === 'failed') || undefined;
    }, 30_000, 100);
    for (const query of ['', '&service=echo', '&state=succeeded', '&state=failed', '&state=queued', '&state=running']) {
      for (const [variant, headers] of VARIANTS) {
        const ids = await listIds(KEY_B, query, headers);
        crossTenant(`list ${query} ${variant}`, !ids.some((id) => aAll.includes(id)));
      }
    }
    expect(new Set(await listIds(KEY_B, ''))).toEqual(new Set(bOwn));
    expect(new Set(await listIds(KEY_A, ''))).toEqual(new Set(aAll));
    expect(new Set(await listIds(KEY_A, '&state=failed'))).toEqual(new Set(aFailed));

    await until(() => aAll.every((id) => aStream.events.some((e) => e.data.id === id && /^(succeeded|failed)$/.test(e.event))) || undefined, 10_000);
    await until(() => bOwn.every((id) => bStream.events.some((e) => e.data.id === id && /^(succeeded|failed)$/.test(e.event))) || undefined, 10_000);
    const leaked = bStream.events.filter((e) => !bOwn.includes(e.data.id ?? ''));
    crossTenant('/v1/events stream', leaked.length === 0);
    expect(aStream.events.filter((e) => bOwn.includes(e.data.id ?? ''))).toEqual([]);
    console.log(`events: A's stream ${aStream.events.length} transitions, B's stream ${bStream.events.length} (all B's own)`);
  });

  it('shows B none of A\'s DLQ entries; B\'s replay of A\'s ids replays nothing and B\'s DELETE is a 404, A\'s entries untouched', async () => {
    await until(async () => ((await dlqCount()) === aFailed.length + 1) || undefined, 10_000);
    expect(new Set(await dlqIds(KEY_A))).toEqual(new Set(aFailed));
    const callsBefore = stack.demo.calls.length;
    for (const [variant, headers] of VARIANTS) {
      const seen = await dlqIds(KEY_B, headers);
      crossTenant(`DLQ browse ${variant}`, seen.length === 1 && seen[0] === bFailed);
      const replay = await call(KEY_B, 'POST', '/v1/dlq/echo/replay', headers, { ids: aFailed });
      expect(replay.status).toBe(200);
      crossTenant(`DLQ replay ids ${variant}`, (replay.body.replayed as string[]).length === 0 && JSON.stringify(replay.body.notFound) === JSON.stringify(aFailed));
      const all = await call(KEY_B, 'POST', '/v1/dlq/echo/replay', headers, { all: true, dryRun: true });
      crossTenant(`DLQ replay all (dry run) ${variant}`, JSON.stringify(all.body.replayed) === JSON.stringify([bFailed]));
      for (const id of aFailed) {
        const del = await call(KEY_B, 'DELETE', `/v1/dlq/echo/${id}`, headers);
        crossTenant(`DLQ delete ${variant}`, del.status === 404 && del.body.code === 'GW_ERR_DLQ_ENTRY_NOT_FOUND');
      }
    }
    // A's entries and jobs are as they were: nothing replayed, nothing removed, nothing called.
    expect(await dlqCount()).toBe(aFailed.length + 1);
    expect(new Set(await dlqIds(KEY_A))).toEqual(new Set(aFailed));
    for (const id of aFailed) expect(await stateOf(KEY_A, id)).toBe('failed');
    expect(stack.demo.calls.length).toBe(callsBefore);
    // Control: the routes do work for the owner.
    const own = await call(KEY_A, 'POST', '/v1/dlq/echo/replay', {}, { ids: aFailed, dryRun: true });
    expect(own.body.replayed).toEqual(aFailed);
    expect((await call(KEY_A, 'DELETE', `/v1/dlq/echo/${aFailed[0]}`)).status).toBe(204);
    expect(new Set(await dlqIds(KEY_A))).toEqual(new Set(aFailed.slice(1)));
  });

  it('gives A and B two distinct jobs for the same Idempotency-Key, and a tenant header on a POST does not move the job to A', async () => {
    const key = randomUUID();
    const idem = { 'idempotency-key': key };
    const post = (k: string): Promise<Answer> => call(k, 'POST', '/v1/services/echo/echo', { prefer: 'respond-async', ...idem }, 'same body');
    const a1 = await post(KEY_A);
    const b1 = await post(KEY_B);
    const [a2, b2] = [await post(KEY_A), await post(KEY_B)];
    expect([a1.status, b1.status, a2.status, b2.status]).toEqual([202, 202, 202, 202]);
    crossTenant('same Idempotency-Key', a1.body.id !== b1.body.id);
    expect(a2.body.id).toBe(a1.body.id);
    expect(b2.body.id).toBe(b1.body.id);
    const spoofed = await submit(KEY_B, '/echo', SPOOF);
    for (const [owner, other, id] of [[KEY_A, KEY_B, a1.body.id], [KEY_B, KEY_A, b1.body.id], [KEY_B, KEY_A, spoofed]] as Array<[string, string, string]>) {
      await until(async () => ((await stateOf(owner, id)) === 'succeeded') || undefined, 15_000, 50);
      crossTenant('GET the other tenant\'s idempotent or spoofed job', (await call(other, 'GET', `/v1/jobs/${id}`)).status === 404);
      expect(stack.demo.callsByKey().get(id)).toBe(1);
    }
    expect(await listIds(KEY_A, '')).not.toContain(spoofed);
  });

  it('denies 100% of the cross-tenant attempts', () => {
    console.log(`tenant isolation: ${denied} of ${attempts} cross-tenant attempts denied`);
    // 15 jobs × 2 variants × (GET + SSE) + 4 without a key; 6 lists × 2 + the event stream;
    // 2 variants × (browse + replay ids + replay all + 5 deletes); idempotency key + 3 owner checks.
    expect(attempts).toBe(15 * 2 * 2 + 4 + (6 * 2 + 1) + 2 * (3 + 5) + 4);
    expect(denied).toBe(attempts);
  });
});
