import { Writable } from 'node:stream';
import { pino } from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { loggerOptions } from '../../shared/logger.ts';
import { endHop, formatTraceparent, parseTraceparent, randomHex, SpanKind, startHop, traceIdOf } from '../../shared/tracing.ts';

const TP = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

describe('W3C trace context without an OpenTelemetry SDK', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('parses and formats version-00 traceparents and rejects malformed or all-zero ids', () => {
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect(formatTraceparent(parseTraceparent(tp)!)).toBe(tp);
    expect(traceIdOf(tp)).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    for (const bad of ['', '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01']) {
      expect(parseTraceparent(bad), bad).toBeUndefined();
    }
  });

  it('continues a trace with the same trace id, a new span id and the same flags', () => {
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';
    const hop = startHop('test', SpanKind.PRODUCER, parent);
    endHop(hop);
    expect(hop.traceparent).toMatch(TP);
    expect(hop.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(parseTraceparent(hop.traceparent)!.spanId).not.toBe('00f067aa0ba902b7');
    expect(hop.traceparent.endsWith('-00')).toBe(true);
  });

  it('starts a new sampled trace when there is no (valid) parent, with distinct ids per start', () => {
    const a = startHop('test', SpanKind.PRODUCER, undefined);
    const b = startHop('test', SpanKind.PRODUCER, 'garbage');
    for (const h of [a, b]) {
      expect(h.traceparent).toMatch(TP);
      expect(h.traceparent.endsWith('-01')).toBe(true);
    }
    expect(a.traceId).not.toBe(b.traceId);
  });
});

describe('log redaction', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  function capture(logBodies: boolean): Record<string, unknown> {
    let line = '';
    const stream = new Writable({ write: (c: Buffer, _e, cb) => { line += c.toString(); cb(); } });
    pino(loggerOptions({ logBodies }), stream).warn({ body: 'payload', headers: { authorization: 'Bearer s3cret', 'x-api-key': 'k' }, apiKey: 'k2', token: 't' }, 'x');
    return JSON.parse(line) as Record<string, unknown>;
  }

  it('redacts bodies unless LOG_BODIES, and credentials always', () => {
    const off = capture(false);
    expect(off.body).toBe('[redacted]');
    const on = capture(true);
    expect(on.body).toBe('payload');
    for (const line of [off, on]) {
      expect(line.headers).toEqual({ authorization: '[redacted]', 'x-api-key': '[redacted]' });
      expect(line.apiKey).toBe('[redacted]');
      expect(line.token).toBe('[redacted]');
    }
  });
});

describe('pooled random ids', () => {
  it('gives 2,000 distinct hex ids of the asked length across several pool refills', () => {
    const ids = Array.from({ length: 2_000 }, () => randomHex(24));
    expect(ids.every((id) => /^[0-9a-f]{48}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(2_000);
    expect(new Set(ids.map((id) => id.slice(32))).size).toBe(2_000); // span ids too
  });
});
