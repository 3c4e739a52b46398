import { connect, type Channel, type ChannelModel } from 'amqplib';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Enqueuer } from '../../enqueuer/enqueuer.ts';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { RedisBucketStore } from '../../enqueuer/security/redis-bucket-store.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { LogSink, Stack } from '../support/stack.ts';

const KEY_A = 'gwk_tenant-a-0123456789abcdefghijklmnop';
const KEY_A_ECHO_ONLY = 'gwk_tenant-a-echo-only-0123456789abcdef';
const KEY_B = 'gwk_tenant-b-0123456789abcdefghijklmnop';
const KEY_C = 'gwk_tenant-c-0123456789abcdefghijklmnop';
const REVOKED = 'gwk_revoked-0123456789abcdefghijklmnopqr';
const A_BURST = 10;

const keys = {
  keys: [
    { id: 'a-main', sha256: hashKey(KEY_A), tenant: 'a' },
    { id: 'a-echo', sha256: hashKey(KEY_A_ECHO_ONLY), tenant: 'a', services: ['echo'] },
    { id: 'b-main', sha256: hashKey(KEY_B), tenant: 'b' },
    { id: 'c-main', sha256: hashKey(KEY_C), tenant: 'c' },
  ],
  tenants: { a: { ratePerS: 2, burst: A_BURST }, c: { maxInflight: 2 } },
};

interface Answer {
  status: number;
  headers: Headers;
  body: string;
}

describe('API keys, tenants and quotas', () => {
  const url = brokerUrl();
  const logs = new LogSink();
  let stack: Stack;
  const call = async (path: string, key?: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Answer> => {
    const res = await fetch(`${stack.baseUrl}${path}`, {
      method: 'POST',
      body: 'x',
      ...init,
      headers: { 'content-type': 'text/plain', ...(key ? { authorization: `Bearer ${key}` } : {}), ...init.headers },
    });
    return { status: res.status, headers: res.headers, body: await res.text() };
  };

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('auth'),
      services: { echo: { url: '{DEMO}' }, other: { url: '{DEMO}' } },
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys), AUTH_FAILURES_PER_MIN: '20', LOG_LEVEL: 'debug' },
      logs,
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('answers 401 problem+json with WWW-Authenticate for a missing, malformed, revoked or wrongly-typed credential, and never reaches the downstream', async () => {
    const before = stack.demo.calls.length;
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${REVOKED}` },
      { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      { authorization: 'Bearer' },
      { authorization: `Bearer ${KEY_A} extra` },
      { authorization: `bearer${KEY_A}` },
      { authorization: `Bearer ${hashKey(KEY_A)}` },
      { 'x-api-key': KEY_A },
    ];
    for (const headers of attempts) {
      const r = await call('/v1/services/echo/echo', undefined, { headers });
      expect(r.status).toBe(401);
      expect(r.headers.get('content-type')).toBe('application/problem+json');
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((JSON.parse(r.body) as { code: string }).code).toBe('GW_ERR_UNAUTHORIZED');
    }
    expect(stack.demo.calls.length).toBe(before);
    expect((await call('/v1/services/echo/echo', KEY_A)).status).toBe(200);
  });

  it('answers 403 for a service the key may not call, including one that does not exist', async () => {
    expect((await call('/v1/services/echo/echo', KEY_A_ECHO_ONLY)).status).toBe(200);
    for (const svc of ['other', 'nope']) {
      const r = await call(`/v1/services/${svc}/echo`, KEY_A_ECHO_ONLY);
      expect(r.status).toBe(403);
      expect((JSON.parse(r.body) as { code: string }).code).toBe('GW_ERR_FORBIDDEN');
    }
    expect((await call('/v1/services/other/echo', KEY_A)).status).toBe(200);
  });

  it('gives a burst of twice the bucket from tenant A 429s with Retry-After and RateLimit headers while tenant B is served normally at the same time', async () => {
    await new Promise((r) => setTimeout(r, (A_BURST / 2) * 1000 + 200)); // let A's bucket refill after the tests above
    const [a, b] = await Promise.all([
      Promise.all(Array.from({ length: 2 * A_BURST }, () => call('/v1/services/echo/echo', KEY_A))),
      Promise.all(Array.from({ length: 2 * A_BURST }, () => call('/v1/services/echo/echo', KEY_B))),
    ]);
    const okA = a.filter((r) => r.status === 200);
    const limited = a.filter((r) => r.status === 429);
    expect(okA.length).toBeGreaterThanOrEqual(A_BURST);
    expect(okA.length).toBeLessThanOrEqual(A_BURST + 1); // at 2 tokens/s at most one refills during the burst
    expect(limited.length).toBe(2 * A_BURST - okA.length);
    for (const r of limited) {
      expect(r.headers.get('content-type')).toBe('application/problem+json');
      expect((JSON.parse(r.body) as { code: string }).code).toBe('GW_ERR_RATE_LIMITED');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(r.headers.get('ratelimit-policy')).toBe(`"tenant";q=${A_BURST};w=${A_BURST / 2}`);
      expect(r.headers.get('ratelimit')).toMatch(/^"tenant";r=0;t=[1-5]$/);
    }
    expect(okA.every((r) => /^"tenant";r=\d+;t=\d+$/.test(r.headers.get('ratelimit') ?? ''))).toBe(true);
    expect(b.map((r) => r.status)).toEqual(b.map(() => 200));
    expect(b.every((r) => r.headers.get('ratelimit') === null)).toBe(true);
  });

  it('caps the sync requests one tenant has in flight (429 too-many-inflight) without touching other tenants', async () => {
    const results = await Promise.all([
      ...Array.from({ length: 3 }, () => call('/v1/services/echo/delay/600', KEY_C)),
      call('/v1/services/echo/delay/600', KEY_B),
    ]);
    const c = results.slice(0, 3).map((r) => r.status).sort();
    expect(c).toEqual([200, 200, 429]);
    const refused = results.find((r) => r.status === 429)!;
    expect((JSON.parse(refused.body) as { code: string }).code).toBe('GW_ERR_TOO_MANY_INFLIGHT');
    expect(results[3]!.status).toBe(200);
    expect(stack.enqueuer.guard.inflightOf('c')).toBe(0);
    expect((await call('/v1/services/echo/echo', KEY_C)).status).toBe(200);
  });

  it('puts the authenticated tenant into every AMQP message whatever tenant headers the client sends', async () => {
    const conn: ChannelModel = await connect(url);
    const ch: Channel = await conn.createChannel();
    const spy = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(spy.queue, stack.topology.names.workExchange, stack.topology.names.rpcRoutingKey('echo'));
    const spoof = { 'x-tenant': 'a', 'gw-tenant': 'a', tenant: 'a', 'x-gw-tenant': 'a' };
    for (let i = 0; i < 5; i++) expect((await call('/v1/services/echo/echo', KEY_B, { headers: spoof })).status).toBe(200);
    const tenants: unknown[] = [];
    for (let msg = await ch.get(spy.queue, { noAck: true }); msg; msg = await ch.get(spy.queue, { noAck: true })) {
      tenants.push(msg.properties.headers?.['gw-tenant']);
      expect(JSON.stringify(msg.properties)).not.toContain(KEY_B);
    }
    expect(tenants).toEqual(['b', 'b', 'b', 'b', 'b']);
    await conn.close();
  });

  it('throttles failed authentications per source IP (429 after the budget, also for a valid key) and writes no key material to the logs', async () => {
    let sawThrottle = false;
    for (let i = 0; i < 25 && !sawThrottle; i++) {
      const r = await call('/v1/services/echo/echo', `gwk_guess-${i}-0123456789abcdef`);
      if (r.status === 429) sawThrottle = true;
      else expect(r.status).toBe(401);
    }
    expect(sawThrottle).toBe(true);
    const valid = await call('/v1/services/echo/echo', KEY_A);
    expect(valid.status).toBe(429);
    expect(Number(valid.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    const text = logs.lines.map((l) => JSON.stringify(l)).join('\n');
    expect(logs.lines.some((l) => l.msg === 'authentication failed')).toBe(true);
    for (const secret of [KEY_A, KEY_A_ECHO_ONLY, KEY_B, KEY_C, REVOKED, 'gwk_guess', hashKey(KEY_A), hashKey(KEY_B)]) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/Bearer /);
  });
});

describe('rate-limit buckets shared through Redis', () => {
  const url = brokerUrl();
  let stack: Stack;
  let second: Enqueuer;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('redis-rl'),
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys), REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    });
    second = new Enqueuer(stack.enqueuerConfig, { logger: pino({ level: 'silent' }) });
    await second.start();
    await second.waitUntilReady(30_000);
  });
  afterAll(async () => {
    await second?.stop().catch(() => undefined);
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('falls back to per-replica buckets, not to refusing traffic, when Redis does not answer', async () => {
    const store = new RedisBucketStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'x:', logger: pino({ level: 'silent' }), commandTimeoutMs: 100 });
    const policy = { name: 'tenant', ratePerS: 1, burst: 2 };
    const results = [];
    for (let i = 0; i < 3; i++) results.push((await store.take('t:a', policy)).allowed);
    await store.close();
    expect(results).toEqual([true, true, false]);
  });

  it('lets two enqueuer replicas together serve one tenant no more than its burst', async () => {
    const send = (base: string) => fetch(`${base}/v1/services/echo/echo`, { method: 'POST', body: 'x', headers: { authorization: `Bearer ${KEY_A}` } }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    });
    const bases = [stack.baseUrl, `http://127.0.0.1:${second.port}`];
    const statuses = await Promise.all(Array.from({ length: 2 * A_BURST }, (_, i) => send(bases[i % 2]!)));
    const ok = statuses.filter((s) => s === 200).length;
    expect(ok).toBeGreaterThanOrEqual(A_BURST);
    expect(ok).toBeLessThanOrEqual(A_BURST + 1);
    expect(statuses.filter((s) => s === 429)).toHaveLength(2 * A_BURST - ok);
  });
});
