import { connect } from 'amqplib';
import { decodeRequest } from '../../shared/envelope.ts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { Stack } from '../support/stack.ts';

describe('sync request-reply through RabbitMQ', () => {
  let stack: Stack;
  const url = brokerUrl();

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('sync'),
      services: {
        echo: { url: '{DEMO}', breaker: { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeoutMs: 1500, rollingWindowMs: 10000 } },
      },
      enqueuerEnv: { BODY_LIMIT_BYTES: String(64 * 1024) },
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('returns a binary body of all 256 byte values byte-identical, with the downstream status and content type', async () => {
    const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  it('returns a JSON body byte-identical and forwards only allow-listed headers', async () => {
    const json = '{"b":[1,2,{"ü":"\\u0000"}],"a":  1.50}';
    const before = stack.demo.calls.length;
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo?x=1&y=%20z`, {
      method: 'PUT',
      body: json,
      headers: { 'content-type': 'application/json', 'x-secret-internal': 'nope', accept: 'application/json', cc: 'gw.other.rpc' },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(json);
    expect(res.headers.get('content-type')).toBe('application/json');
    const call = stack.demo.calls[before]!;
    expect(call.method).toBe('PUT');
    expect(call.headers['x-secret-internal']).toBeUndefined();
    expect(call.headers.cc).toBeUndefined();
    expect(call.headers.accept).toBe('application/json');
    expect(call.headers['idempotency-key']).toBe(res.headers.get('x-gw-job-id'));
  });

  it('gives each of 200 concurrent requests its own answer and leaves the correlation map empty', async () => {
    const bodies = Array.from({ length: 200 }, (_, i) => `request-${i}-${Math.random()}`);
    const answers = await Promise.all(
      bodies.map(async (b) => {
        const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: b, headers: { 'content-type': 'text/plain' } });
        return { status: res.status, text: await res.text() };
      }),
    );
    expect(answers.map((a) => a.status)).toEqual(bodies.map(() => 200));
    expect(answers.map((a) => a.text)).toEqual(bodies);
    expect(stack.enqueuer.replies.inflight).toBe(0);
    expect(stack.enqueuer.replies.publishPending).toBe(0);
  });

  it('answers 404 for an unknown service and 413 over the body limit, as problem+json', async () => {
    const unknown = await fetch(`${stack.baseUrl}/v1/services/nope/echo`, { method: 'POST', body: 'x' });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toBe('application/problem+json');
    expect(((await unknown.json()) as { code: string }).code).toBe('GW_ERR_SERVICE_UNKNOWN');
    const big = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: Buffer.alloc(64 * 1024 + 1) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { code: string }).code).toBe('GW_ERR_BODY_TOO_LARGE');
  });

  it('answers 504 within the wait plus a small margin when the downstream is slower than the wait', async () => {
    const t0 = Date.now();
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/delay/3000`, { method: 'POST', body: 'slow', headers: { prefer: 'wait=1' } });
    const elapsedMs = Date.now() - t0;
    expect(res.status).toBe(504);
    expect(((await res.json()) as { code: string }).code).toMatch(/GW_ERR_(REPLY|DOWNSTREAM)_TIMEOUT/);
    expect(elapsedMs).toBeGreaterThanOrEqual(950);
    expect(elapsedMs).toBeLessThan(1500);
    expect(stack.enqueuer.replies.inflight).toBe(0);
  });

  it('never sends a request whose deadline passed while it was queued', async () => {
    await stack.stopDequeuer();
    const before = stack.demo.calls.length;
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'expired', headers: { prefer: 'wait=1' } });
    expect(res.status).toBe(504);
    const dequeuer = await stack.startDequeuer();
    // A fresh request goes through, so the old one (if still queued) had its chance to be consumed.
    const ok = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'fresh' });
    expect(await ok.text()).toBe('fresh');
    await new Promise((r) => setTimeout(r, 300));
    const expiredJob = res.headers.get('x-gw-job-id');
    const keysSeen = stack.demo.calls.slice(before).map((c) => c.idempotencyKey);
    expect(keysSeen).toEqual([ok.headers.get('x-gw-job-id')]);
    expect(keysSeen).not.toContain(expiredJob);
    const metrics = await dequeuer.registry.getSingleMetricAsString('gw_messages_consumed_total');
    expect(metrics).toMatch(/kind="rpc"/);
  });

  it('opens the breaker after repeated failures: later requests get 503 fast without reaching the downstream, and a half-open success closes it', async () => {
    stack.demo.down = true;
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x' });
      expect(r.status).toBe(503);
      await r.arrayBuffer();
    }
    const before = stack.demo.calls.length;
    const t0 = performance.now();
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x' });
    const elapsedMs = performance.now() - t0;
    expect(res.status).toBe(503);
    const problem = (await res.json()) as { code: string };
    expect(problem.code).toBe('GW_ERR_BREAKER_OPEN');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(elapsedMs).toBeLessThan(50);
    expect(stack.demo.calls.length).toBe(before);
    stack.demo.down = false;
    await new Promise((r) => setTimeout(r, 1700));
    const probe = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'probe' });
    expect(probe.status).toBe(200);
    expect(stack.dequeuer!.downstreams.get('echo')!.state).toBe('closed');
  });

  it('reports ready, live and metrics', async () => {
    expect((await fetch(`${stack.baseUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${stack.baseUrl}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/gw_http_requests_total\{route="\/v1\/services\/:service\{\/\*path\}",method="POST",status="200"/);
    expect(metrics).toMatch(/gw_reply_correlation_inflight\{[^}]*\} 0/);
  });

  it('puts no client header into AMQP headers or properties', async () => {
    const conn = await connect(url);
    const ch = await conn.createChannel();
    const spy = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(spy.queue, stack.topology.names.workExchange, stack.topology.names.rpcRoutingKey('echo'));
    await stack.stopDequeuer();
    const pending = fetch(`${stack.baseUrl}/v1/services/echo/echo`, {
      method: 'POST',
      body: 'x',
      headers: { prefer: 'wait=2', cc: 'gw.other', bcc: 'x', 'x-death': 'x', 'user-id': 'admin', 'reply-to': 'evil', 'correlation-id': 'evil', expiration: '1' },
    });
    let msg: Awaited<ReturnType<typeof ch.get>> = false;
    for (let i = 0; i < 50 && !msg; i++) {
      msg = await ch.get(spy.queue, { noAck: true });
      if (!msg) await new Promise((r) => setTimeout(r, 20));
    }
    expect((await pending).status).toBe(504);
    expect(msg).not.toBe(false);
    if (msg) {
      const headerNames = Object.keys(msg.properties.headers ?? {});
      expect(headerNames.every((h) => h.startsWith('gw-') || h === 'traceparent' || h === 'tracestate')).toBe(true);
      expect(msg.properties.userId).toBeUndefined();
      expect(msg.properties.replyTo).toMatch(/^amq\.rabbitmq\.reply-to/);
      // The forwarded headers as the dequeuer reads them (inside gw-sync since contract v2, ADR 1403).
      const forwarded = Object.keys(decodeRequest(msg).headers);
      expect(forwarded.every((h) => stack.enqueuerConfig.services.echo!.forwardRequestHeaders.includes(h))).toBe(true);
      for (const hostile of ['cc', 'bcc', 'x-death', 'user-id', 'reply-to', 'correlation-id', 'expiration']) expect(forwarded).not.toContain(hostile);
    }
    await conn.close();
    await stack.startDequeuer();
  });
});
