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
