import { describe, expect, it } from 'vitest';
import { forwardedTarget, pickHeaders, validTraceparent } from '../../enqueuer/http/forward.ts';
import { parsePrefer } from '../../enqueuer/http/prefer.ts';

describe('Prefer header (RFC 7240)', () => {
  it('reads respond-async and wait in any order and case', () => {
    expect(parsePrefer('respond-async, wait=5')).toEqual({ respondAsync: true, waitS: 5 });
    expect(parsePrefer(['Wait=2', 'RESPOND-ASYNC'])).toEqual({ respondAsync: true, waitS: 2 });
    expect(parsePrefer(undefined)).toEqual({ respondAsync: false });
    expect(parsePrefer('handling=lenient')).toEqual({ respondAsync: false });
  });
  it.each(['wait=-1', 'wait=0', 'wait=NaN', 'wait=1e12', 'wait=', 'wait=1.5'])('ignores %s (RFC 7240: a preference that cannot be honoured is ignored)', (v) => {
    expect(parsePrefer(v)).toEqual({ respondAsync: false });
  });
});

describe('forwarded path', () => {
  const mount = '/v1/services/echo';
  it('keeps the raw path and query', () => {
    expect(forwardedTarget(`${mount}/a/b%41c?x=1&y=2`, mount)).toEqual({ path: '/a/b%41c', query: 'x=1&y=2' });
    expect(forwardedTarget(mount, mount)).toEqual({ path: '/', query: '' });
  });
  it.each([
    '//evil.example/x', '/..%2fsecret', '/a/%2e%2e/b', '/a/%252e%252e/b', '/a\\b', '/a%00b', '/a%0d%0aX: y', '/@evil.example',
    '/a/./b', '/http://evil.example', '/%zz',
    // RELIABILITY.md 6.3 path corpus
    '/%2e%2e/secret', '/%2E%2E%2Fsecret', '/..', '/.', '/a/../../b', '/%2e%2e', '/%2F%2Fevil.example', '/%5c..%5csecret', '/a%5cb',
    '/%0d%0aInjected:%20x', '/a%09b', '/a%7fb', '/%68ttp://evil.example', '/%', '/%2', '/user@evil.example/x', '/%40evil.example',
    '/a b', '/a\tb', '/a\u0000b', '/%25%32%65%25%32%65/x', '/a?x=\r\n',
  ])('rejects %s', (p) => {
    expect(() => forwardedTarget(mount + p, mount)).toThrow(expect.objectContaining({ code: 'GW_ERR_PATH_INVALID' }));
  });
});

describe('forwarded path: what stays allowed', () => {
  const mount = '/v1/services/echo';
  it.each(['/a/b.c/d', '/files/report..pdf', '/%E2%80%A4%E2%80%A4/x', '/a/b@c', '/q?redirect=http://x', '/a;b=c', '/~user/.well-known'])('keeps %s (no way out of the origin)', (p) => {
    expect(forwardedTarget(mount + p, mount).path.startsWith('/')).toBe(true);
  });
  it('answers 414 beyond the longest target', () => {
    expect(() => forwardedTarget(`${mount}/${'a'.repeat(70_000)}`, mount)).toThrow(expect.objectContaining({ code: 'GW_ERR_URI_TOO_LONG', status: 414 }));
  });
});

describe('header allow-list and trace context', () => {
  it('copies only allow-listed headers', () => {
    expect(pickHeaders({ accept: 'a', cc: 'q', 'x-death': 'd', 'content-type': 'text/plain' }, ['accept', 'content-type'])).toEqual({ accept: 'a', 'content-type': 'text/plain' });
  });
  it('accepts only well-formed version-00 traceparents', () => {
    expect(validTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')).toBeDefined();
    expect(validTraceparent('00-00000000000000000000000000000000-b7ad6b7169203331-01')).toBeUndefined();
    expect(validTraceparent('garbage')).toBeUndefined();
  });
});
