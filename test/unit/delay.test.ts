import { beforeEach, describe, expect, it } from 'vitest';
import { parseServices } from '../../shared/config/services.ts';
import { delayTarget, maxDelayMs } from '../../shared/topology/delay.ts';
import { buildTopology, delayRoutingKey, MAX_DELAY_UNITS } from '../../shared/topology/topology.ts';
import { DELAY_HEADER, NOT_BEFORE_HEADER, parseDelay } from '../../enqueuer/http/delay.ts';

beforeEach(() => {
  expect.hasAssertions();
});

const topology = buildTopology(parseServices({ services: { echo: { url: 'http://127.0.0.1:1' } } }), { prefix: 'gw', delayUnitMs: 100 });
const MAX = maxDelayMs(topology);

describe('delayTarget: where a delayed copy is published', () => {
  it('sends a zero (or negative) delay straight to the work exchange', () => {
    expect(delayTarget(topology, 'echo', 0)).toEqual({ exchange: 'gw.work', routingKey: 'work.echo', delayMs: 0, units: 0 });
    expect(delayTarget(topology, 'echo', -5).exchange).toBe('gw.work');
  });
  it('rounds up to the delay unit, so a job never runs early, and enters at the highest level', () => {
    const t = delayTarget(topology, 'echo', 1001);
    expect(t).toEqual({ exchange: 'gw.delay.L24', routingKey: delayRoutingKey(11, 'echo'), delayMs: 1100, units: 11 });
    expect(delayTarget(topology, 'echo', 1).units).toBe(1);
  });
  it('accepts the levels maximum and refuses anything longer', () => {
    expect(MAX).toBe(MAX_DELAY_UNITS * 100);
    expect(delayTarget(topology, 'echo', MAX).units).toBe(MAX_DELAY_UNITS);
    expect(() => delayTarget(topology, 'echo', MAX + 1)).toThrow(RangeError);
    expect(() => delayTarget(topology, 'echo', Number.NaN)).toThrow(RangeError);
  });
});

describe('parseDelay: the Gw-Delay-Ms / Gw-Not-Before request headers', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const code = (fn: () => unknown): string | undefined => {
    try {
      fn();
    } catch (err) {
      return (err as { code?: string }).code;
    }
    return undefined;
  };
  it('asks for no delay when neither header is sent', () => {
    expect(parseDelay({}, now, MAX)).toBeUndefined();
  });
  it('reads milliseconds from Gw-Delay-Ms', () => {
    expect(parseDelay({ [DELAY_HEADER]: '1500' }, now, MAX)).toBe(1500);
    expect(parseDelay({ [DELAY_HEADER]: ' 0 ' }, now, MAX)).toBe(0);
  });
  it('reads an RFC 3339 time or an HTTP-date from Gw-Not-Before; a past time means now', () => {
    expect(parseDelay({ [NOT_BEFORE_HEADER]: '2030-01-01T00:00:02.5Z' }, now, MAX)).toBe(2500);
    expect(parseDelay({ [NOT_BEFORE_HEADER]: '2030-01-01T01:00:10+01:00' }, now, MAX)).toBe(10_000);
    expect(parseDelay({ [NOT_BEFORE_HEADER]: 'Tue, 01 Jan 2030 00:00:03 GMT' }, now, MAX)).toBe(3000);
    expect(parseDelay({ [NOT_BEFORE_HEADER]: '2029-12-31T23:00:00Z' }, now, MAX)).toBe(0);
  });
  it.each([
    [{ [DELAY_HEADER]: '-1' }],
    [{ [DELAY_HEADER]: '1.5' }],
    [{ [DELAY_HEADER]: 'soon' }],
    [{ [DELAY_HEADER]: ['1', '2'] }],
    [{ [NOT_BEFORE_HEADER]: '2030-01-01' }],
    [{ [NOT_BEFORE_HEADER]: '2030-01-01T00:00:00' }],
    [{ [NOT_BEFORE_HEADER]: '2030-02-30T00:00:00Z' }],
    [{ [DELAY_HEADER]: '1', [NOT_BEFORE_HEADER]: '2030-01-01T00:00:00Z' }],
  ])('answers 400 GW_ERR_DELAY_INVALID for %o', (headers) => {
    expect(code(() => parseDelay(headers, now, MAX))).toBe('GW_ERR_DELAY_INVALID');
  });
  it('answers 400 for a delay beyond the delay levels maximum', () => {
    expect(parseDelay({ [DELAY_HEADER]: String(MAX) }, now, MAX)).toBe(MAX);
    expect(code(() => parseDelay({ [DELAY_HEADER]: String(MAX + 1) }, now, MAX))).toBe('GW_ERR_DELAY_INVALID');
    expect(code(() => parseDelay({ [NOT_BEFORE_HEADER]: new Date(now + MAX + 1000).toISOString() }, now, MAX))).toBe('GW_ERR_DELAY_INVALID');
  });
});
