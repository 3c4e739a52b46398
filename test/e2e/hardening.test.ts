import { STATUS_CODES } from 'node:http';
import { randomUUID } from 'node:crypto';
import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { isErrorCode } from '../../shared/errors.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { rawRequest } from '../support/raw-http.ts';
import { until } from '../support/sse.ts';
import { LogSink, Stack } from '../support/stack.ts';

/** Issue 12: one regression test per numbered item the hostile probe found (items 1-3 and 8-10 elsewhere in this file). */
const KEY_A = 'gwk_hardening-tenant-a-0123456789abcdef';
const KEY_A_ECHO = 'gwk_hardening-a-echo-only-0123456789ab';
const KEY_B = 'gwk_hardening-tenant-b-0123456789abcdef';
const KEY_C = 'gwk_hardening-tenant-c-0123456789abcdef';
const keys = {
  keys: [
    { id: 'a-main', sha256: hashKey(KEY_A), tenant: 'a' },
    { id: 'a-echo', sha256: hashKey(KEY_A_ECHO), tenant: 'a', services: ['echo'] },
    { id: 'b-main', sha256: hashKey(KEY_B), tenant: 'b' },
    { id: 'c-main', sha256: hashKey(KEY_C), tenant: 'c' },
  ],
  tenants: { c: { maxInflight: 2 } },
};

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown>;
}

describe('hardening (issue 12): the gaps a hostile probe found', () => {
  const url = brokerUrl();
  const logs = new LogSink();
  let stack: Stack;

  const call = async (key: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> => {
    const res = await fetch(`${stack.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...headers }, ...(body === undefined ? {} : { body }) });
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not JSON
    }
    return { status: res.status, headers: res.headers, text, json };
  };

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('hardening'),
      services: { echo: { url: '{DEMO}' }, other: { url: '{DEMO}' }, parked: { url: '{DEMO}', work: { maxLength: 30 } } },
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys), IDEMPOTENCY_WAIT_MS: '1500', HEADERS_TIMEOUT_MS: '800', REQUEST_TIMEOUT_MS: '1500', SSE_MAX_CONNECTIONS: '12', SSE_MAX_PER_TENANT: '6', DLQ_MAX_WAITING_PER_TENANT: '4', MAX_DELAYED_PER_TENANT: '20', IDEMPOTENCY_MAX_BYTES: String(1024 * 1024), JOB_STORE_MAX_BYTES: String(1024 * 1024) },
      logs,
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('item 5: service names that are Object.prototype members are unknown services (404), and leave the idempotency key free', async () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const key = `proto-${name}`;
      const bad = await call(KEY_A, 'POST', `/v1/services/${name}/x`, { 'idempotency-key': key, 'content-type': 'text/plain' }, 'p');
      expect(bad.status, name).toBe(404);
      expect(bad.headers.get('content-type')).toContain('application/problem+json');
      expect(bad.json.code).toBe('GW_ERR_SERVICE_UNKNOWN');
      const retry = await call(KEY_A, 'POST', '/v1/services/echo/echo', { 'idempotency-key': key, 'content-type': 'text/plain' }, 'p');
      expect(retry.status, `corrected retry after ${name}`).toBe(200);
    }
    for (const path of ['/v1/dlq/constructor', '/v1/jobs?service=constructor', '/v1/events?service=__proto__']) {
      const res = await fetch(`${stack.baseUrl}${path}`, { headers: { authorization: `Bearer ${KEY_A}` }, signal: AbortSignal.timeout(3000) }).catch((err: Error) => err);
      if (res instanceof Error) throw res;
      expect(res.status, path).toBeLessThan(500);
      await res.body?.cancel();
    }
  });

  it('item 6: a Content-Type the broker cannot carry (over 255 bytes, or not a header token) is a 415 problem before publishing, and no library message reaches a client', async () => {
    const long = `text/plain; charset=utf-8; x=${'a'.repeat(260)}`;
    for (const [mode, prefer] of [['sync', {}], ['async', { prefer: 'respond-async' }]] as const) {
      const res = await call(KEY_A, 'POST', '/v1/services/echo/echo', { 'content-type': long, ...prefer }, 'body');
      expect(res.status, mode).toBe(415);
      expect(res.json.code).toBe('GW_ERR_CONTENT_TYPE_INVALID');
      expect(res.headers.get('retry-after')).toBeNull();
      expect(res.text).not.toMatch(/short ?str|amqplib|RangeError|TypeError|\bat [A-Za-z]+ \(/i);
    }
    const ok = await call(KEY_A, 'POST', '/v1/services/echo/echo', { 'content-type': `text/plain; x=${'a'.repeat(200)}` }, 'fine');
    expect(ok.status).toBe(200);
  });

  it('item 7: a failure after the idempotency claim (431 from a long forwarded header) releases the key: the corrected retry runs at once', async () => {
    const key = 'after-claim-431';
    const bad = await call(KEY_A, 'POST', '/v1/services/echo/echo', { 'idempotency-key': key, 'content-type': 'text/plain', accept: `text/plain;q=0.9, ${'a'.repeat(9000)}` }, 'same');
    expect(bad.status).toBe(431);
    const t0 = performance.now();
    const retry = await call(KEY_A, 'POST', '/v1/services/echo/echo', { 'idempotency-key': key, 'content-type': 'text/plain' }, 'same');
    expect(retry.status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('item 11: the status label of the HTTP metrics is bounded: unregistered downstream statuses become their class (2xx, 4xx)', async () => {
    const odd = [...Array.from({ length: 15 }, (_, i) => 231 + i), ...Array.from({ length: 10 }, (_, i) => 461 + i), 299];
    for (const code of odd) {
      const res = await call(KEY_A, 'GET', `/v1/services/echo/status/${code}`);
      expect(res.status).toBe(code);
    }
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    const labels = new Set([...metrics.matchAll(/^gw_http_requests_total\{.*?\bstatus="([^"]+)"/gm)].map((m) => m[1]!));
    expect(labels.has('2xx')).toBe(true);
    expect(labels.has('4xx')).toBe(true);
    for (const label of labels) expect(label in STATUS_CODES || /^[1-5]xx$/.test(label), label).toBe(true);
    for (const code of odd) expect(labels.has(String(code)), String(code)).toBe(false);
  });

  it('item 12: a request not received in time is a 408 problem with its own code, not GW_ERR_BAD_REQUEST', async () => {
    const a = await rawRequest(stack.enqueuer.port, [`POST /v1/services/echo/x HTTP/1.1\r\nHost: x\r\nX-Slow: a`], { timeoutMs: 6000 });
    expect(a.status).toBe(408);
    expect(a.headers['content-type']).toContain('application/problem+json');
    const problem = JSON.parse(a.body.toString('utf8')) as { code: string; status: number };
    expect(problem).toMatchObject({ code: 'GW_ERR_REQUEST_TIMEOUT', status: 408 });
    expect(isErrorCode(problem.code)).toBe(true);
  });

  it('property test finding: bytes pipelined behind a request in flight are answered after its answer, and nothing is answered after a Connection: close', async () => {
    const auth = `Authorization: Bearer ${KEY_A}\r\n`;
    // A HEAD (its answer needs a broker round trip) followed by bytes that are no request: the 400 used
    // to be written at once, ahead of the HEAD's answer, so the client took it for the HEAD's.
    const head = await rawRequest(stack.enqueuer.port, [`HEAD /v1/services/echo/echo HTTP/1.1\r\nHost: x\r\n${auth}\r\n GARBAGE`], { timeoutMs: 5000 });
    expect(head.status).toBe(200);
    expect(head.headers['x-gw-job-id']).toBeDefined();
    expect(head.raw.toString('latin1').match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 400']);
    // Two pipelined GETs, then garbage: both answered, in order, then the 400.
    const two = `GET /v1/services/echo/headers HTTP/1.1\r\nHost: x\r\n${auth}\r\n`;
    const pipelined = await rawRequest(stack.enqueuer.port, [`${two}${two}\u0000bad\r\n\r\n`], { timeoutMs: 5000 });
    const answers = pipelined.raw.toString('latin1');
    expect(pipelined.status).toBe(200);
    expect(answers.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    expect(answers.indexOf('HTTP/1.1 400')).toBeGreaterThan(answers.indexOf('HTTP/1.1 200'));
    // A 417 says Connection: close: the unframed body after it is not answered as another request.
    const expectation = await rawRequest(stack.enqueuer.port, [`GET /v1/services/echo/echo HTTP/1.1\r\nHost: x\r\n${auth}Expect: 200-ok\r\n\r\n{"ids":[]}`], { timeoutMs: 5000 });
    expect(expectation.status).toBe(417);
    expect(expectation.raw.toString('latin1').match(/HTTP\/1\.1 /g)).toHaveLength(1);
  });

  it('item 12: Prefer members it cannot honour are ignored (200), not refused (400)', async () => {
    for (const prefer of ['waitress=1', 'handling=lenient', 'wait=0', 'wait=abc', 'wait=99999999999']) {
      const res = await call(KEY_A, 'POST', '/v1/services/echo/echo', { prefer, 'content-type': 'text/plain' }, 'x');
      expect(res.status, prefer).toBe(200);
      expect(res.headers.get('preference-applied'), prefer).toBeNull();
    }
  });

  it('item 12: Gw-Not-Before with an impossible date is a 400, not a job run on another day', async () => {
    // Within the longest delay, so only the calendar check can refuse it (Date.parse takes it as tomorrow 00:00).
    const impossible = `${new Date().toISOString().slice(0, 10)}T24:00:00Z`;
    const res = await call(KEY_A, 'POST', '/v1/services/echo/echo', { prefer: 'respond-async', 'gw-not-before': impossible }, 'x');
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('GW_ERR_DELAY_INVALID');
  });

  /** Opens an SSE stream; resolves with its status once the head arrived (the stream stays open until `close`). */
  const openStream = async (key: string, path: string): Promise<{ status: number; code?: string; events: string[]; close: () => void }> => {
    const ac = new AbortController();
    const res = await fetch(`${stack.baseUrl}${path}`, { headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' }, signal: ac.signal });
    if (res.status !== 200) {
      const body = (await res.json()) as { code: string };
      return { status: res.status, code: body.code, events: [], close: () => ac.abort() };
    }
    const events: string[] = [];
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body!) events.push(decoder.decode(chunk as Uint8Array, { stream: true }));
      } catch {
        // aborted
      }
    })();
    return { status: 200, events, close: () => ac.abort() };
  };
  /** An async job that stays queued for a minute (delayed), so its event stream stays open. */
  const parkedJob = async (key: string, service = 'echo'): Promise<string> => {
    const res = await call(key, 'POST', `/v1/services/${service}/echo`, { prefer: 'respond-async', 'gw-delay-ms': '60000' }, 'parked');
    expect(res.status).toBe(202);
    return (res.json.id ?? res.json.jobId) as string;
  };

  it('item 3: a key limited to echo cannot browse, replay or discard another service\'s DLQ, list, read or stream its jobs; the DLQ audit line names the key', async () => {
    const otherJob = await parkedJob(KEY_A, 'other');
    const echoJob = await parkedJob(KEY_A, 'echo');
    const events = await openStream(KEY_A_ECHO, '/v1/events');
    expect(events.status).toBe(200);
    const refused: Array<[string, string, number, string?]> = [
      ['GET', '/v1/dlq/other', 403],
      ['POST', '/v1/dlq/other/replay', 403, JSON.stringify({ all: true, dryRun: true })],
      ['DELETE', `/v1/dlq/other/${otherJob}`, 403],
      ['GET', '/v1/jobs?service=other', 403],
      ['GET', `/v1/jobs/${otherJob}`, 404],
      ['GET', `/v1/jobs/${otherJob}/events`, 404],
      ['GET', '/v1/events?service=other', 403],
      // Express answered OPTIONS itself (200, Allow), past the allow-list guard (found by the property test).
      ['OPTIONS', '/v1/dlq/other', 404],
      ['OPTIONS', `/v1/dlq/other/${otherJob}`, 404],
    ];
    for (const [method, path, status, body] of refused) {
      const res = await call(KEY_A_ECHO, method, path, body ? { 'content-type': 'application/json' } : {}, body);
      expect(res.status, `${method} ${path}`).toBe(status);
      expect(res.headers.get('content-type'), `${method} ${path}`).toContain('application/problem+json');
      expect(res.text, `${method} ${path}`).not.toContain(otherJob);
    }
    const list = await call(KEY_A_ECHO, 'GET', '/v1/jobs?limit=100');
    expect(list.status).toBe(200);
    const ids = (list.json.items as Array<{ id: string; service: string }>).map((j) => j.id);
    expect(ids).toContain(echoJob);
    expect(ids).not.toContain(otherJob);
    expect((list.json.items as Array<{ service: string }>).every((j) => j.service === 'echo')).toBe(true);
    // The same tenant's unrestricted key still sees both.
    const all = await call(KEY_A, 'GET', '/v1/jobs?limit=100');
    expect((all.json.items as Array<{ id: string }>).map((j) => j.id)).toEqual(expect.arrayContaining([echoJob, otherJob]));
    // A transition of each service: the restricted stream carries echo's only.
    const o2 = await parkedJob(KEY_A, 'other');
    const e2 = await parkedJob(KEY_A, 'echo');
    const deadline = Date.now() + 5000;
    while (!events.events.join('').includes(e2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    events.close();
    expect(events.events.join('')).toContain(e2);
    expect(events.events.join('')).not.toContain(o2);
    expect(events.events.join('')).not.toContain('"service":"other"');
    const replay = await call(KEY_A_ECHO, 'POST', '/v1/dlq/echo/replay', { 'content-type': 'application/json' }, JSON.stringify({ all: true, dryRun: true }));
    expect(replay.status).toBe(200);
    const audit = logs.lines.find((l) => l.audit === 'dlq.replay' && l.service === 'echo');
    expect(audit).toMatchObject({ tenant: 'a', keyId: 'a-echo' });
  });

  it('item 8: event streams are capped per tenant and in total, and the slot is reserved before anything is awaited (15 concurrent opens, cap 6 per tenant, 12 in total)', async () => {
    const jobA = await parkedJob(KEY_A);
    const jobB = await parkedJob(KEY_B);
    const a = await Promise.all(Array.from({ length: 15 }, () => openStream(KEY_A, `/v1/jobs/${jobA}/events`)));
    try {
      expect(a.filter((s) => s.status === 200)).toHaveLength(6);
      expect(a.filter((s) => s.status === 429).every((s) => s.code === 'GW_ERR_TOO_MANY_INFLIGHT')).toBe(true);
      // Tenant A holding its share does not lock tenant B out.
      const b = await Promise.all(Array.from({ length: 8 }, () => openStream(KEY_B, `/v1/jobs/${jobB}/events`)));
      try {
        expect(b.filter((s) => s.status === 200)).toHaveLength(6);
        // 12 open in total now: tenant C is refused by the global cap.
        const c = await openStream(KEY_C, '/v1/events');
        c.close();
        expect(c.status).toBe(429);
      } finally {
        for (const s of b) s.close();
      }
    } finally {
      for (const s of a) s.close();
    }
    // Closed streams give their slots back.
    await new Promise((r) => setTimeout(r, 300));
    const again = await openStream(KEY_A, `/v1/jobs/${jobA}/events`);
    again.close();
    expect(again.status).toBe(200);
  });

  it('item 10: Prefer: respond-async, wait=N counts against the tenant\'s in-flight cap like a sync request (cap 2: the third concurrent one is 429)', async () => {
    const answers = await Promise.all(
      Array.from({ length: 3 }, () => call(KEY_C, 'POST', '/v1/services/echo/delay/1500', { prefer: 'respond-async, wait=5', 'content-type': 'text/plain' }, 'w')),
    );
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 429]);
    expect(answers.find((r) => r.status === 429)!.json.code).toBe('GW_ERR_TOO_MANY_INFLIGHT');
    // Released afterwards.
    const after = await call(KEY_C, 'POST', '/v1/services/echo/echo', { prefer: 'respond-async, wait=5', 'content-type': 'text/plain' }, 'w');
    expect(after.status).toBe(200);
  });

  it('item 9: DLQ operations wait in a bounded queue (429 + Retry-After past it) and tenants take turns: B\'s browse is not stuck behind A\'s burst', async () => {
    // Enough entries that one rotation takes a while.
    const conn = await connect(url);
    try {
      const ch = await conn.createConfirmChannel();
      const dlq = stack.topology.names.deadLetterQueue('other');
      for (let i = 0; i < 400; i++) ch.sendToQueue(dlq, Buffer.from('x'), { messageId: randomUUID(), headers: { 'gw-tenant': i % 2 ? 'a' : 'b' } });
      await ch.waitForConfirms();
      await ch.close();
    } finally {
      await conn.close();
    }
    const order: string[] = [];
    const browse = (key: string, who: string): Promise<Answer> => call(key, 'GET', '/v1/dlq/other?limit=1').then((r) => {
      if (r.status === 200) order.push(who);
      return r;
    });
    const burst = Array.from({ length: 12 }, (_, i) => browse(KEY_A, `a${i}`));
    await new Promise((r) => setTimeout(r, 30));
    const b = await browse(KEY_B, 'b');
    const a = await Promise.all(burst);
    expect(b.status).toBe(200);
    const refused = a.filter((r) => r.status === 429);
    expect(refused.length).toBe(8);
    for (const r of refused) {
      expect(r.json.code).toBe('GW_ERR_DLQ_TOO_MANY_OPS');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    // Round-robin: B runs right after the operation of A that was running when it arrived.
    expect(order.indexOf('b')).toBeLessThanOrEqual(1);
    expect(order).toHaveLength(5);
  });

  it('item 1: delayed jobs are bounded per service (its work bound, 30) and per tenant (20): past either, 503 + Retry-After, counted in metrics', async () => {
    const delayed = (key: string): Promise<Answer> => call(key, 'POST', '/v1/services/parked/echo', { prefer: 'respond-async', 'gw-delay-ms': '3600000', 'content-type': 'text/plain' }, 'later');
    const a: Answer[] = [];
    for (let i = 0; i < 25; i++) a.push(await delayed(KEY_A));
    expect(a.filter((r) => r.status === 202)).toHaveLength(20);
    const aRefused = a.filter((r) => r.status === 503);
    expect(aRefused).toHaveLength(5);
    for (const r of aRefused) {
      expect(r.json).toMatchObject({ code: 'GW_ERR_DELAYED_BACKLOG_FULL', scope: 'tenant', limit: 20 });
      // The earliest reservation falls due in about an hour.
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(3500);
    }
    const b: Answer[] = [];
    for (let i = 0; i < 15; i++) b.push(await delayed(KEY_B));
    expect(b.filter((r) => r.status === 202)).toHaveLength(10);
    expect(b.filter((r) => r.status === 503).every((r) => r.json.code === 'GW_ERR_DELAYED_BACKLOG_FULL' && r.json.scope === 'service')).toBe(true);
    // Undelayed jobs of the service are not affected by the delayed bound.
    expect((await call(KEY_B, 'POST', '/v1/services/parked/echo', { prefer: 'respond-async' }, 'now')).status).toBe(202);
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^gw_delayed_jobs\{service="parked"[^}]*\} 30$/m);
    expect(metrics).toMatch(/^gw_delayed_refused_total\{service="parked",scope="tenant"[^}]*\} 5$/m);
    expect(metrics).toMatch(/^gw_delayed_refused_total\{service="parked",scope="service"[^}]*\} 5$/m);
    // What the broker holds: exactly the 30 accepted, in the delay levels.
    const conn = await connect(url);
    try {
      const ch = await conn.createChannel();
      let held = 0;
      for (const q of stack.topology.queues.filter((x) => x.name.includes('.delay.'))) held += (await ch.checkQueue(q.name)).messageCount;
      expect(held).toBeGreaterThanOrEqual(30);
      await ch.close();
    } finally {
      await conn.close();
    }
  });

  // Last: it fills the stores to their bounds.
  it('item 2: the stores\' byte bounds hold through the running enqueuer (1 MiB each here) and the byte gauges show them', async () => {
    const gauge = async (name: string): Promise<number> => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'm').exec(await (await fetch(`${stack.baseUrl}/metrics`)).text());
      expect(m, name).not.toBeNull();
      return Number(m![1]);
    };
    // Ten idempotent sync answers of 300 KiB (≈400 KiB stored as base64 each): 4 MiB offered to a 1 MiB bound.
    const body = 'p'.repeat(300 * 1024);
    for (let i = 0; i < 10; i++) {
      const res = await call(KEY_A, 'POST', '/v1/services/echo/echo', { 'idempotency-key': `bytes-${i}`, 'content-type': 'text/plain' }, body);
      expect(res.status).toBe(200);
      const held = await gauge('gw_idempotency_store_bytes');
      expect(held).toBeLessThanOrEqual(1024 * 1024);
      if (i === 0) expect(held).toBeGreaterThan(300 * 1024);
    }
    // The newest answer is still replayed from the store (no second downstream call).
    const calls = stack.demo.calls.length;
    expect((await call(KEY_A, 'POST', '/v1/services/echo/echo', { 'idempotency-key': 'bytes-9', 'content-type': 'text/plain' }, body)).text).toBe(body);
    expect(stack.demo.calls.length).toBe(calls);
    // Jobs whose results (up to the dequeuer's 64 KiB MAX_RESULT_BYTES) fill the job store: 30 × ≥ 85 KiB stored.
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await call(KEY_B, 'POST', '/v1/services/echo/echo', { prefer: 'respond-async', 'content-type': 'text/plain' }, 'r'.repeat(64 * 1024))).json.id as string);
    await until(async () => ((await call(KEY_B, 'GET', `/v1/jobs/${ids.at(-1)}`)).json.state === 'succeeded') || undefined, 15_000, 100);
    const jobBytes = await gauge('gw_job_store_bytes');
    expect(jobBytes).toBeGreaterThan(256 * 1024);
    expect(jobBytes).toBeLessThanOrEqual(1024 * 1024);
  });
});
