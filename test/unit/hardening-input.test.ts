import { describe, expect, it } from 'vitest';
import { parseDelay } from '../../enqueuer/http/delay.ts';
import { forwardedTarget, validTracestate } from '../../enqueuer/http/forward.ts';
import { parsePrefer } from '../../enqueuer/http/prefer.ts';

const mount = '/v1/services/echo';
const NOW = Date.parse('2026-01-01T00:00:00Z');
const MAX = 10 * 365 * 86_400_000;

describe('issue 12 item 4: a ;-parameter never hides a dot segment, // and encoded spaces are refused anywhere, decoding runs until stable', () => {
  it.each([
    '/..;/admin', '/%2e%2e;/admin', '/a/..;/..;/admin', '/.;/x', '/..;jsessionid=1/admin', '/a/%2e%2e%3b/admin', '/a/..%3Bx/admin',
    '/%252e%252e;/admin', '/a//b', '/a/b//', '/a/%2f%2fb', '/a%20b', '/a%2520b', '/a/%09', '/a/%25252525252e%25252525252e/b',
  ])('refuses %s with 400 GW_ERR_PATH_INVALID', (p) => {
    expect(() => forwardedTarget(mount + p, mount)).toThrow(expect.objectContaining({ code: 'GW_ERR_PATH_INVALID', status: 400 }));
  });
  it.each(['/a;b=c', '/a/b;v=1/c', '/files/report..pdf', '/a/...;x', '/.well-known/x'])('keeps %s', (p) => {
    expect(forwardedTarget(mount + p, mount).path).toBe(p);
  });
});

describe('issue 12 item 12: RFC 7240 preferences it cannot honour are ignored, not refused', () => {
  it.each(['waitress=1', 'handling=lenient', 'handling=lenient; wait=3x', 'wait=0', 'wait=-1', 'wait=abc', 'wait=1e12', 'wait=', 'wait=1.5', 'wait=99999999999', 'respond-async; waitx'])('ignores %s', (v) => {
    const p = parsePrefer(v);
    expect(p.waitS).toBeUndefined();
  });
  it('still reads a valid wait next to ignored members', () => {
    expect(parsePrefer('waitress=1, wait=4, respond-async')).toEqual({ respondAsync: true, waitS: 4 });
    expect(parsePrefer('wait = 3')).toEqual({ respondAsync: false, waitS: 3 });
  });
});

describe('issue 12 item 12: tracestate is validated per the W3C grammar; members that do not parse are dropped, never cut mid-entry', () => {
  it('keeps valid members in order', () => {
    expect(validTracestate('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7')).toBe('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
    expect(validTracestate('tenant1@vendor=abc , b=1')).toBe('tenant1@vendor=abc,b=1');
  });
  it('drops members that do not parse', () => {
    expect(validTracestate('Upper=1,ok=2,no-equals,=x,bad=va=lue,sp=a b ')).toBe('ok=2,sp=a b');
    expect(validTracestate('garbage')).toBeUndefined();
    expect(validTracestate(['a=1', 'b=2'])).toBe('a=1,b=2');
  });
  it('never exceeds 512 characters and never ends inside a member', () => {
    const members = Array.from({ length: 30 }, (_, i) => `k${i}=${'v'.repeat(40)}`);
    const out = validTracestate(members.join(','))!;
    expect(out.length).toBeLessThanOrEqual(512);
    for (const m of out.split(',')) expect(members).toContain(m);
    expect(out.startsWith('k0=')).toBe(true);
  });
  it('keeps at most 32 members and drops duplicated keys after the first', () => {
    const out = validTracestate(Array.from({ length: 40 }, (_, i) => `k${i}=1`).join(','))!;
    expect(out.split(',')).toHaveLength(32);
    expect(validTracestate('a=1,a=2,b=3')).toBe('a=1,b=3');
  });
});

describe('issue 12 item 12: Gw-Not-Before refuses impossible dates instead of rolling them over', () => {
  it.each(['2030-02-30T00:00:00Z', '2030-04-31T00:00:00Z', '2029-02-29T00:00:00Z', '2030-13-01T00:00:00Z', '2030-01-01T24:00:00Z', '2030-01-01T23:60:00Z', '2030-01-01T00:00:61Z', '2030-01-01T00:00:00+24:00', 'Sat, 30 Feb 2030 00:00:00 GMT', 'Mon, 31 Apr 2030 00:00:00 GMT'])('refuses %s', (v) => {
    expect(() => parseDelay({ 'gw-not-before': v }, NOW, MAX)).toThrow(expect.objectContaining({ code: 'GW_ERR_DELAY_INVALID', status: 400 }));
  });
  it.each([['2028-02-29T00:00:00Z', Date.parse('2028-02-29T00:00:00Z')], ['2030-01-01T01:00:00+01:00', Date.parse('2030-01-01T00:00:00Z')], ['Fri, 01 Mar 2030 00:00:00 GMT', Date.parse('2030-03-01T00:00:00Z')]])('accepts %s', (v, at) => {
    expect(parseDelay({ 'gw-not-before': v }, NOW, MAX)).toBe(at - NOW);
  });
});
