import { STATUS_CODES } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { isErrorCode } from '../../shared/errors.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { rawRequest } from '../support/raw-http.ts';
import { LogSink, Stack } from '../support/stack.ts';

/** Issue 12: one regression test per numbered item the hostile probe found (items 1-3 and 8-10 elsewhere in this file). */
const KEY_A = 'gwk_hardening-tenant-a-0123456789abcdef';
const KEY_A_ECHO = 'gwk_hardening-a-echo-only-0123456789ab';
const KEY_B = 'gwk_hardening-tenant-b-0123456789abcdef';
const keys = {
  keys: [
    { id: 'a-main', sha256: hashKey(KEY_A), tenant: 'a' },
    { id: 'a-echo', sha256: hashKey(KEY_A_ECHO), tenant: 'a', services: ['echo'] },
    { id: 'b-main', sha256: hashKey(KEY_B), tenant: 'b' },
  ],
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
      services: { echo: { url: '{DEMO}' }, other: { url: '{DEMO}' } },
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys), IDEMPOTENCY_WAIT_MS: '1500', HEADERS_TIMEOUT_MS: '800', REQUEST_TIMEOUT_MS: '1500' },
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
});
