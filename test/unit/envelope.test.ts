import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { decodeReply, decodeRequest, encodeReply, encodeRequest, EnvelopeError, type RequestEnvelope } from '../../shared/envelope.ts';

function asMessage(content: Buffer, properties: object): Message {
  return { content, fields: {} as Message['fields'], properties: { headers: {}, ...properties } as Message['properties'] };
}

describe('message envelope v1', () => {
  const env: RequestEnvelope = {
    jobId: 'job-1', requestId: 'req-1', service: 'echo', mode: 'sync', method: 'POST', path: '/echo', query: 'a=1',
    headers: { 'content-type': 'application/json' }, tenant: 't1', deadline: 1_900_000_000_000, attempt: 1, enqueuedAt: 1_800_000_000_000,
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', body: Buffer.from('{"x":1}'),
  };

  it('round-trips a request through AMQP properties and headers', () => {
    const options = encodeRequest(env, { expirationMs: 1500.2 });
    expect(options.expiration).toBe('1501');
    expect(options.persistent).toBe(false);
    expect(options.messageId).toBe('job-1');
    expect(Object.keys(options.headers!).every((h) => h.startsWith('gw-') || h === 'traceparent')).toBe(true);
    expect(decodeRequest(asMessage(env.body, options))).toEqual(env);
  });

  it('marks async jobs persistent', () => {
    expect(encodeRequest({ ...env, mode: 'async' }).persistent).toBe(true);
  });

  it('rejects a message that does not follow the contract', () => {
    expect(() => decodeRequest(asMessage(Buffer.alloc(0), { messageId: 'x' }))).toThrow(EnvelopeError);
    const options = encodeRequest(env);
    options.headers!['gw-attempt'] = -1;
    expect(() => decodeRequest(asMessage(Buffer.alloc(0), options))).toThrow(/gw-attempt/);
    options.headers!['gw-attempt'] = 1;
    options.headers!['gw-headers'] = '{"a":1}';
    expect(() => decodeRequest(asMessage(Buffer.alloc(0), options))).toThrow(/gw-headers/);
  });

  it('round-trips replies, including a gateway error code', () => {
    const ok = encodeReply('c1', { status: 201, headers: { etag: '"1"' }, body: Buffer.from('x') });
    expect(decodeReply(asMessage(Buffer.from('x'), ok))).toEqual({ status: 201, headers: { etag: '"1"' }, body: Buffer.from('x') });
    const err = encodeReply('c1', { status: 0, headers: {}, body: Buffer.alloc(0), error: { code: 'GW_ERR_BREAKER_OPEN', retryAfterS: 3 } });
    expect(decodeReply(asMessage(Buffer.alloc(0), err)).error).toEqual({ code: 'GW_ERR_BREAKER_OPEN', retryAfterS: 3 });
  });

  it('sends a sync request and a reply with only the fields their consumers read (ADR 1400), async jobs with all of them', () => {
    const sync = encodeRequest({ ...env, query: '' }, { expirationMs: 1000 });
    expect(sync).not.toHaveProperty('correlationId');
    expect(sync).not.toHaveProperty('type');
    expect(sync).not.toHaveProperty('appId');
    expect(sync.headers).not.toHaveProperty('gw-query');
    expect(decodeRequest(asMessage(env.body, sync))).toEqual({ ...env, query: '' });
    const job = encodeRequest({ ...env, mode: 'async', query: '' });
    expect(job).toMatchObject({ correlationId: 'job-1', type: 'gw.request.v1', appId: 'gw-enqueuer', headers: { 'gw-query': '' } });
    const bare = encodeReply('c1', { status: 204, headers: {}, body: Buffer.alloc(0) });
    expect(Object.keys(bare.headers!)).toEqual(['gw-status']);
    expect(decodeReply(asMessage(Buffer.alloc(0), bare))).toEqual({ status: 204, headers: {}, body: Buffer.alloc(0) });
  });
});

describe('compact sync envelope v2 (ADR 1403)', () => {
  const env: RequestEnvelope = {
    jobId: 'job-2', requestId: 'req-2', service: 'echo', mode: 'sync', method: 'POST', path: '/echo', query: 'a=1',
    headers: { 'content-type': 'application/json', accept: '*/*' }, tenant: 't1', deadline: 1_900_000_000_000, attempt: 1, enqueuedAt: 1_800_000_000_000,
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'k=v', body: Buffer.from('{"x":1}'),
  };

  it('round-trips a sync request in three headers, the tenant readable without decoding', () => {
    const options = encodeRequest(env, { expirationMs: 1500, syncVersion: 2, replyTo: 'amq.rabbitmq.reply-to.x' });
    expect(Object.keys(options.headers!)).toEqual(['gw-v', 'gw-tenant', 'gw-sync']);
    expect(options.headers!['gw-v']).toBe(2);
    expect(options.headers!['gw-tenant']).toBe('t1');
    expect(options).toMatchObject({ messageId: 'job-2', persistent: false, expiration: '1500', contentType: 'application/json', replyTo: 'amq.rabbitmq.reply-to.x' });
    expect(decodeRequest(asMessage(env.body, options))).toEqual(env);
    const bare: RequestEnvelope = { ...env, query: '', headers: {} };
    delete bare.deadline;
    delete bare.traceparent;
    delete bare.tracestate;
    expect(decodeRequest(asMessage(env.body, encodeRequest(bare, { syncVersion: 2 })))).toEqual(bare);
  });

  it('decodes the header values amqplib hands over as Buffers', () => {
    const options = encodeRequest(env, { syncVersion: 2 });
    const headers = Object.fromEntries(Object.entries(options.headers!).map(([k, v]) => [k, typeof v === 'string' ? Buffer.from(v) : v]));
    expect(decodeRequest(asMessage(env.body, { ...options, headers }))).toEqual(env);
  });

  it('stays v1 for async jobs and for what v2 cannot carry', () => {
    expect(encodeRequest({ ...env, mode: 'async' }, { syncVersion: 2 }).headers!['gw-v']).toBe(1);
    expect(encodeRequest({ ...env, attempt: 2, lastError: 'x' }, { syncVersion: 2 }).headers!['gw-v']).toBe(1);
    expect(encodeRequest(env, { syncVersion: 1 }).headers!['gw-v']).toBe(1);
    expect(encodeRequest(env).headers!['gw-v']).toBe(1);
  });

  it('rejects a v2 message that does not follow the contract', () => {
    const good = encodeRequest(env, { syncVersion: 2 });
    const withSync = (value: unknown) => asMessage(Buffer.alloc(0), { ...good, headers: { ...good.headers, 'gw-sync': value } });
    const fields = JSON.parse(good.headers!['gw-sync'] as string) as unknown[];
    const patched = (i: number, v: unknown) => JSON.stringify(fields.map((f, j) => (j === i ? v : f)));
    expect(() => decodeRequest(withSync(undefined))).toThrow(/gw-sync/);
    expect(() => decodeRequest(withSync('{not json'))).toThrow(/gw-sync/);
    expect(() => decodeRequest(withSync('{"a":1}'))).toThrow(/gw-sync/);
    expect(() => decodeRequest(withSync(JSON.stringify(fields.slice(0, 9))))).toThrow(/gw-sync/);
    expect(() => decodeRequest(withSync(patched(3, 'no-slash')))).toThrow(/path/);
    expect(() => decodeRequest(withSync(patched(5, { a: 1 })))).toThrow(/headers/);
    expect(() => decodeRequest(withSync(patched(6, -1)))).toThrow(/enqueuedAt/);
    expect(() => decodeRequest(withSync(patched(7, 1.5)))).toThrow(/deadline/);
    expect(() => decodeRequest(asMessage(Buffer.alloc(0), { ...good, headers: { ...good.headers, 'gw-tenant': undefined } }))).toThrow(/gw-tenant/);
    for (const bad of [withSync(undefined), withSync(patched(1, 7))]) expect(() => decodeRequest(bad)).toThrow(EnvelopeError);
  });
});
