import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeRequest, type RequestEnvelope } from '../../shared/envelope.ts';
import { loggerOptions } from '../../shared/logger.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { LogSink, Stack } from '../support/stack.ts';

/** The services' own logger options (redaction included) on the captured stream. */
class ServiceLogSink extends LogSink {
  override logger(level = 'info'): Logger {
    return pino(loggerOptions({ level }), this.stream);
  }
}

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_TP = `00-${TRACE_ID}-b7ad6b7169203331-01`;
const TP = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

describe('trace context and job log correlation across enqueuer, dequeuer and downstream', () => {
  const url = brokerUrl();
  const logs = new ServiceLogSink();
  let stack: Stack;
  let conn: ChannelModel;
  let ch: ConfirmChannel;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('trace logs'),
      logs,
      services: { echo: { url: '{DEMO}', timeoutMs: 2000, retry: { maxAttempts: 2, baseMs: 50, capMs: 100 } } },
    });
    conn = await connect(url);
    ch = await conn.createConfirmChannel();
  });
  afterAll(async () => {
    await conn?.close();
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  async function until<T>(fn: () => T | undefined, timeoutMs = 15_000): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = fn();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it('sends the downstream the trace id the client sent, under a new span id', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x', headers: { traceparent: CLIENT_TP, 'content-type': 'text/plain' } });
    expect(res.status).toBe(200);
    const call = stack.demo.calls.find((c) => c.idempotencyKey === res.headers.get('x-gw-job-id'))!;
    const m = TP.exec(call.headers.traceparent as string);
    expect(m?.[1]).toBe(TRACE_ID);
    expect(m?.[2]).not.toBe('b7ad6b7169203331');
  });

  it('starts a trace when the client sends none (or a malformed one), so the downstream still gets a valid traceparent', async () => {
    const ids: string[] = [];
    for (const headers of [{}, { traceparent: '00-zz-1-01' }]) {
      const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x', headers });
      expect(res.status).toBe(200);
      const call = stack.demo.calls.find((c) => c.idempotencyKey === res.headers.get('x-gw-job-id'))!;
      const m = TP.exec(call.headers.traceparent as string);
      expect(m).not.toBeNull();
      ids.push(m![1]!);
    }
    expect(new Set(ids).size).toBe(2);
  });

  it('logs a failed sync request in both services with the same job id, request id, tenant, service and trace id', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/delay/3000`, { method: 'POST', body: 'x', headers: { traceparent: CLIENT_TP, prefer: 'wait=1' } });
    expect(res.status).toBe(504);
    const jobId = res.headers.get('x-gw-job-id')!;
    const lines = await until(() => {
      const l = logs.lines.filter((x) => x.jobId === jobId);
      return l.some((x) => x.msg === 'downstream call failed') && l.some((x) => x.msg === 'request failed') ? l : undefined;
    }, 10_000);
    for (const line of lines) {
      expect(line).toMatchObject({ jobId, requestId: res.headers.get('x-request-id'), tenant: 'default', service: 'echo', traceId: TRACE_ID });
    }
  });

  it('gives every log line of one async job (two attempts, then dead) its job id, attempt and trace id, and no body', async () => {
    const traceId = randomUUID().replaceAll('-', '');
    const env: RequestEnvelope = {
      jobId: randomUUID(), requestId: randomUUID(), service: 'echo', mode: 'async', method: 'POST', path: '/status/503', query: '',
      headers: { 'content-type': 'text/plain' }, tenant: 'acme', attempt: 1, enqueuedAt: Date.now(), body: Buffer.from('secret-payload'),
      traceparent: `00-${traceId}-1111111111111111-01`,
    };
    const n = stack.topology.names;
    ch.publish(n.workExchange, n.workRoutingKey('echo'), env.body, { ...encodeRequest(env), mandatory: true });
    await ch.waitForConfirms();
    const lines = await until(() => {
      const l = logs.lines.filter((x) => x.jobId === env.jobId);
      return l.some((x) => x.msg === 'job dead-lettered') ? l : undefined;
    });
    expect(lines.map((l) => `${l.msg as string}@${l.attempt as number}`)).toEqual(['attempt failed; retry scheduled@1', 'job dead-lettered@2']);
    for (const line of lines) {
      expect(line).toMatchObject({ jobId: env.jobId, requestId: env.requestId, tenant: 'acme', service: 'echo', traceId });
      expect(line.body).toBe('[redacted]');
    }
    expect(JSON.stringify(logs.lines)).not.toContain('secret-payload');
    // Each id once per line: a child logger's binding plus the same field again writes it twice.
    const twice = logs.raw.filter((line) => ['service', 'jobId', 'tenant', 'requestId', 'attempt', 'traceId'].some((k) => line.split(`"${k}":`).length > 2));
    expect(twice).toEqual([]);
    const calls = stack.demo.calls.filter((c) => c.idempotencyKey === env.jobId);
    expect(calls).toHaveLength(2);
    for (const c of calls) expect(TP.exec(c.headers.traceparent as string)?.[1]).toBe(traceId);
  });
});
