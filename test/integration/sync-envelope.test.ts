import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadEnqueuerConfig } from '../../enqueuer/config.ts';
import { decodeReply, encodeRequest, type RequestEnvelope } from '../../shared/envelope.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { Stack } from '../support/stack.ts';

/**
 * The compact sync message (contract v2, docs/adr/1403) on the wire, and a rolling upgrade: a new
 * dequeuer answers both a v2 request and the v1 request an older (or `SYNC_ENVELOPE_VERSION=1`)
 * enqueuer sends.
 */
describe('sync request envelope v2 and v1 side by side', () => {
  const url = brokerUrl();
  let stack: Stack;
  let conn: ChannelModel;
  let ch: Channel;
  let spyQueue: string;

  beforeAll(async () => {
    stack = await Stack.start({ url, prefix: uniquePrefix('syncenv') });
    conn = await connect(url);
    ch = await conn.createChannel();
    // A copy of every sync request of `echo`: bound to the work exchange with the rpc routing key.
    spyQueue = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(spyQueue, stack.topology.names.workExchange, stack.topology.names.rpcRoutingKey('echo'));
  });
  afterAll(async () => {
    await conn?.close().catch(() => {});
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('publishes a sync request as gw-v 2 with three headers, and the dequeuer answers it', async () => {
    const body = '{"hello":"v2"}';
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo?q=1`, {
      method: 'POST', body, headers: { 'content-type': 'application/json', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(body);
    const copy = await ch.get(spyQueue, { noAck: true });
    if (copy === false) throw new Error('no copy of the sync request reached the spy queue');
    const { properties } = copy;
    expect(Object.keys(properties.headers!).sort()).toEqual(['gw-sync', 'gw-tenant', 'gw-v']);
    expect(properties.headers!['gw-v']).toBe(2);
    const fields = JSON.parse(String(properties.headers!['gw-sync'])) as unknown[];
    expect(fields.slice(1, 5)).toEqual(['echo', 'POST', '/echo', 'q=1']);
    expect(fields[8]).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    expect(properties.messageId).toBe(res.headers.get('x-gw-job-id'));
    const call = stack.demo.calls.at(-1)!;
    expect(call.headers['idempotency-key']).toBe(res.headers.get('x-gw-job-id'));
    expect(call.headers.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-/);
  });

  it('answers a v1 sync request (what an enqueuer before v2 sends) during a rolling upgrade', async () => {
    const now = Date.now();
    const env: RequestEnvelope = {
      jobId: `v1-${now}`, requestId: `req-v1-${now}`, service: 'echo', mode: 'sync', method: 'POST', path: '/echo', query: '',
      headers: { 'content-type': 'text/plain' }, tenant: 'default', attempt: 1, enqueuedAt: now, deadline: now + 10_000, body: Buffer.from('old enqueuer'),
    };
    const options = encodeRequest(env, { replyTo: 'amq.rabbitmq.reply-to', expirationMs: 10_000 });
    expect(options.headers!['gw-v']).toBe(1);
    const reply = new Promise<ConsumeMessage>((resolve) => {
      void ch.consume('amq.rabbitmq.reply-to', (m) => m && resolve(m), { noAck: true });
    });
    await new Promise((r) => setTimeout(r, 50));
    ch.publish(stack.topology.names.workExchange, stack.topology.names.rpcRoutingKey('echo'), env.body, options);
    const m = await reply;
    expect(m.properties.correlationId).toBe(env.jobId);
    const decoded = decodeReply(m);
    expect(decoded.error).toBeUndefined();
    expect(decoded.status).toBe(200);
    expect(decoded.body.toString()).toBe('old enqueuer');
    expect(stack.demo.calls.some((c) => c.headers['idempotency-key'] === env.jobId)).toBe(true);
  });

  it('sends v1 when SYNC_ENVELOPE_VERSION=1 and refuses any other value', () => {
    const base = { RABBITMQ_URL: url, SERVICES_JSON: JSON.stringify({ services: { echo: { url: 'http://127.0.0.1:1' } } }) };
    expect(loadEnqueuerConfig(base).syncEnvelopeVersion).toBe(2);
    expect(loadEnqueuerConfig({ ...base, SYNC_ENVELOPE_VERSION: '1' }).syncEnvelopeVersion).toBe(1);
    expect(() => loadEnqueuerConfig({ ...base, SYNC_ENVELOPE_VERSION: '3' })).toThrow(/SYNC_ENVELOPE_VERSION/);
  });
});
