import { beforeEach, describe, expect, it } from 'vitest';
import { copyOptions, deliveryLimitDeath, ROTATION_HEADER, timestampMs, toEntry } from '../../enqueuer/dlq-entry.ts';
import { decodeCursor, encodeCursor } from '../../enqueuer/routes/dlq.ts';

beforeEach(() => {
  expect.hasAssertions();
});

const deadLettered = {
  content: Buffer.from('hello'),
  properties: {
    messageId: 'job-1',
    contentType: 'text/plain',
    deliveryMode: 2,
    headers: {
      'gw-v': 1, 'gw-tenant': 't1', 'gw-attempt': 4, 'gw-method': 'POST', 'gw-path': '/status/503', 'gw-last-error': 'downstream answered 503',
      'gw-enqueued-at': 1_700_000_000_000, 'gw-first-failed-at': 1_700_000_001_000, 'x-delivery-count': 2,
      'x-death': [
        { count: 1, reason: 'rejected', queue: 'gw.echo.work', time: { '!': 'timestamp', value: 1_700_000_005 } },
        { count: 2, reason: 'delivery_limit', queue: 'gw.echo.work', time: { '!': 'timestamp', value: 1_700_000_003 } },
        { count: 3, reason: 'expired', queue: 'gw.delay.L02', time: { '!': 'timestamp', value: 1_700_000_002 } },
      ],
      'x-first-death-reason': 'delivery_limit',
    },
  },
};

describe('DLQ entry view', () => {
  it('joins our gw-* headers with the broker x-death (delay-level expiries are not failures): attempts, reason, last error, first and last failure, request summary', () => {
    expect(toEntry(deadLettered as never)).toEqual({
      jobId: 'job-1', tenant: 't1', attempts: 4, reason: 'rejected', deaths: 3, lastError: 'downstream answered 503',
      enqueuedAt: new Date(1_700_000_000_000).toISOString(),
      firstFailedAt: new Date(1_700_000_001_000).toISOString(),
      lastFailedAt: new Date(1_700_000_005_000).toISOString(),
      request: { method: 'POST', path: '/status/503', contentType: 'text/plain', bodyBytes: 5 },
    });
  });
  it('takes the first failure from x-death when the job failed on its first attempt', () => {
    const h = { ...deadLettered.properties.headers } as Record<string, unknown>;
    delete h['gw-first-failed-at'];
    expect(toEntry({ content: Buffer.alloc(0), properties: { headers: h } } as never).firstFailedAt).toBe(new Date(1_700_000_003_000).toISOString());
  });
  it('reads AMQP timestamps in every shape amqplib produces', () => {
    expect(timestampMs(5)).toBe(5000);
    expect(timestampMs({ '!': 'timestamp', value: 5 })).toBe(5000);
    expect(timestampMs(new Date(7))).toBe(7);
    expect(timestampMs('x')).toBeUndefined();
  });
  it('keeps x-death on a rotated copy, drops the DLQ delivery count, stamps the rotation', () => {
    const o = copyOptions(deadLettered as never, { rotate: 'r1' });
    expect(o.headers?.['x-death']).toEqual(deadLettered.properties.headers['x-death']);
    expect(o.headers?.['x-delivery-count']).toBeUndefined();
    expect(o.headers?.[ROTATION_HEADER]).toBe('r1');
    expect(o).toMatchObject({ messageId: 'job-1', contentType: 'text/plain', deliveryMode: 2, mandatory: true });
  });
  it('replays without the broker death headers, and with attempts reset when asked', () => {
    const kept = copyOptions(deadLettered as never, { replay: { resetAttempts: false } });
    expect(kept.headers?.['x-death']).toBeUndefined();
    expect(kept.headers?.['x-first-death-reason']).toBeUndefined();
    expect(kept.headers?.['gw-attempt']).toBe(4);
    const reset = copyOptions(deadLettered as never, { replay: { resetAttempts: true } });
    expect(reset.headers?.['gw-attempt']).toBe(1);
    expect(reset.headers?.['gw-first-failed-at']).toBeUndefined();
    expect(reset.headers?.['gw-tenant']).toBe('t1');
  });
  it('round-trips the opaque cursor and rejects a forged one', () => {
    expect(decodeCursor(encodeCursor(120))).toBe(120);
    expect(decodeCursor(undefined)).toBe(0);
    expect(() => decodeCursor('bm9wZQ')).toThrow();
  });
});

describe('dead transition of a delivery-limit death', () => {
  const byLimit = {
    content: Buffer.from('hello'),
    properties: {
      messageId: 'job-2',
      headers: {
        'gw-tenant': 't1', 'gw-attempt': 1, 'gw-enqueued-at': 1_700_000_000_000, 'gw-request-id': 'req-2',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        'x-death': [{ count: 1, reason: 'delivery_limit', queue: 'gw.echo.work', time: { '!': 'timestamp', value: 1_700_000_003 } }],
      },
    },
  };

  it('derives dead, ranked after the last delivery (gw-attempt + limit), with ids and the delivery_limit error', () => {
    expect(deliveryLimitDeath(byLimit as never, 'echo', 10, 42)).toEqual({
      v: 1, kind: 'job', jobId: 'job-2', tenant: 't1', service: 'echo', state: 'dead', attempt: 11, at: 42,
      enqueuedAt: 1_700_000_000_000, requestId: 'req-2', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      error: { code: 'GW_ERR_DELIVERY_LIMIT', message: expect.stringContaining('11 deliveries') },
    });
  });

  it('derives nothing for a rejected death (the dequeuer published dead), a DLQ rotation copy, or a message without job id or tenant', () => {
    const rejected = { ...byLimit, properties: { ...byLimit.properties, headers: { ...byLimit.properties.headers, 'x-death': [{ count: 1, reason: 'rejected', queue: 'gw.echo.work' }] } } };
    const rotated = { ...byLimit, properties: { ...byLimit.properties, headers: { ...byLimit.properties.headers, [ROTATION_HEADER]: 'r1' } } };
    const anonymous = { ...byLimit, properties: { headers: byLimit.properties.headers } };
    const { 'gw-tenant': _t, ...noTenantHeaders } = byLimit.properties.headers;
    const noTenant = { ...byLimit, properties: { ...byLimit.properties, headers: noTenantHeaders } };
    for (const msg of [rejected, rotated, anonymous, noTenant]) expect(deliveryLimitDeath(msg as never, 'echo', 10)).toBeUndefined();
  });
});
