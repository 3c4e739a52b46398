import fc from 'fast-check';

/** One hostile request, written byte for byte onto a socket. */
export interface HostileCase {
  name: string;
  chunks: Array<string | Buffer>;
  gapMs?: number;
  timeoutMs?: number;
  /** Statuses the case must get (any non-500 answer when omitted). */
  expect?: number[];
  /** Why a close without any response is acceptable for this case (HTTP framing itself is broken). */
  closeOk?: string;
}

const P = '/v1/services/echo/echo';

/** A request head + body; `Content-Length` is added unless a header list already sets framing. */
export function req(method: string, target: string, headers: Array<[string, string]> = [], body: string | Buffer = ''): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const framing = headers.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n));
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: gw.test', 'Connection: close', ...headers.map(([n, v]) => `${n}: ${v}`)];
  if (!framing) lines.push(`Content-Length: ${b.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), b]);
}

const post = (target: string, headers: Array<[string, string]> = [], body = 'x'): Buffer => req('POST', target, headers, body);

/** RELIABILITY.md 6.3, client side: body, headers, paths, JSON, methods, framing. */
export function fixedCorpus(bodyLimit: number): HostileCase[] {
  const cases: HostileCase[] = [];
  const add = (name: string, chunk: Buffer | string, extra: Partial<HostileCase> = {}): void => {
    cases.push({ name, chunks: [chunk], ...extra });
  };
  // Body
  add('body limit - 1', post(P, [], 'a'.repeat(bodyLimit - 1)), { expect: [200] });
  add('body at the limit', post(P, [], 'a'.repeat(bodyLimit)), { expect: [200] });
  add('body limit + 1', post(P, [], 'a'.repeat(bodyLimit + 1)), { expect: [413] });
  add('declared length over the limit, no body', req('POST', P, [['Content-Length', String(bodyLimit + 1)]]), { expect: [413] });
  add('chunked over the limit', req('POST', P, [['Transfer-Encoding', 'chunked']], `${(bodyLimit + 10).toString(16)}\r\n${'b'.repeat(bodyLimit + 10)}\r\n0\r\n\r\n`), { expect: [413] });
  add('10 MiB single line', post(P, [], 'c'.repeat(10 * 1024 * 1024)), { expect: [413], timeoutMs: 10_000 });
  add('Content-Length lies short', req('POST', P, [['Content-Length', '3']], 'abcdefgh'), { expect: [200, 400] });
  add('Content-Length lies long', req('POST', P, [['Content-Length', '50']], 'abc'), { expect: [408], timeoutMs: 6000 });
  add('Content-Length and Transfer-Encoding both (smuggling)', req('POST', P, [['Content-Length', '4'], ['Transfer-Encoding', 'chunked']], '0\r\n\r\n'), { expect: [400] });
  add('two different Content-Lengths', req('POST', P, [['Content-Length', '1'], ['Content-Length', '2']], 'ab'), { expect: [400] });
  add('negative Content-Length', req('POST', P, [['Content-Length', '-1']], 'a'), { expect: [400] });
  add('non-numeric Content-Length', req('POST', P, [['Content-Length', 'ten']], 'a'), { expect: [400] });
  add('gzip body', post(P, [['Content-Encoding', 'gzip']], '\u001f\u008b\u0008'), { expect: [415] });
  add('deflate body', post(P, [['Content-Encoding', 'deflate']], 'x'), { expect: [415] });
  add('br body', post(P, [['Content-Encoding', 'br']], 'x'), { expect: [415] });
  add('empty JSON body', post(P, [['Content-Type', 'application/json']], ''), { expect: [200] });
  add('malformed chunk size', req('POST', P, [['Transfer-Encoding', 'chunked']], 'zz\r\nabc\r\n0\r\n\r\n'), { expect: [400] });
  add('unknown transfer-encoding', req('POST', P, [['Transfer-Encoding', 'gzip, identity']], 'x'), { expect: [400, 501] });
  // Headers
  add('17 KiB header', post(P, [['X-Big', 'h'.repeat(17 * 1024)]]), { expect: [431] });
  add('200 headers', post(P, Array.from({ length: 200 }, (_, i) => [`X-H${i}`, 'v'] as [string, string])), { expect: [431] });
  add('101 headers', post(P, Array.from({ length: 101 }, (_, i) => [`X-H${i}`, 'v'] as [string, string])), { expect: [431] });
  add('96 headers', post(P, Array.from({ length: 96 }, (_, i) => [`X-H${i}`, 'v'] as [string, string])), { expect: [200] });
  for (const [n, v] of [
    ['CC', 'trap'], ['CC', '["trap","rpc.trap"]'], ['BCC', 'trap'], ['BCC', '["work.echo"]'], ['cc', 'rpc.trap'],
    ['x-death', '[{"count":99,"queue":"gw.echo.work"}]'], ['x-delivery-count', '99'], ['x-first-death-queue', 'gw.echo.dlq'],
    ['x-match', 'any'], ['user-id', 'gw-admin'], ['reply-to', 'trap'], ['correlation-id', 'evil'], ['expiration', '1'],
    ['priority', '255'], ['x-tenant', 'other'], ['gw-tenant', 'other'], ['gw-attempt', '99'], ['gw-deadline', '1'],
    ['gw-headers', '{"cc":"trap"}'], ['message-id', 'dup'], ['app-id', 'evil'], ['type', 'gw.reply.v1'], ['delivery-mode', '1'],
  ] as Array<[string, string]>) {
    add(`header ${n}: ${v}`, post(P, [[n, v]]), { expect: [200] });
  }
  // Node joins the two lines into "a, b": not one key, so a 400 rather than guessing which one counts.
  add('duplicate Idempotency-Key', post(P, [['Idempotency-Key', 'a'], ['Idempotency-Key', 'b']]), { expect: [400] });
  add('non-ASCII header value (latin1 bytes)', post(P, [['Accept-Language', 'd\u00e9\u00ff']]), { expect: [200, 400] });
  add('UTF-8 header value', Buffer.concat([Buffer.from(`POST ${P} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: `), Buffer.from('ü€', 'utf8'), Buffer.from('\r\nContent-Length: 0\r\n\r\n')]), { expect: [200, 400] });
  add('obs-fold header', `POST ${P} HTTP/1.1\r\nHost: x\r\nAccept: a\r\n  folded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, { expect: [400] });
  add('CR inside a header value', post(P, [['Accept', 'a\rb']]), { expect: [400] });
  add('LF inside a header value', post(P, [['Accept', 'a\nInjected: b']]), { expect: [200, 400] });
  add('NUL inside a header value', post(P, [['Accept', 'a\u0000b']]), { expect: [400] });
  add('space in a header name', post(P, [['Bad Name', 'v']]), { expect: [400] });
  add('header without colon', `POST ${P} HTTP/1.1\r\nHost: x\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n`, { expect: [400] });
  add('8 KiB header name', post(P, [['X'.repeat(8 * 1024), 'v']]), { expect: [200, 431] });
  add('malformed traceparent', post(P, [['traceparent', '00-zz-zz-zz']]), { expect: [200] });
  add('all-zero traceparent', post(P, [['traceparent', `00-${'0'.repeat(32)}-${'0'.repeat(16)}-01`]]), { expect: [200] });
  for (const v of ['wait=-1', 'wait=0', 'wait=1e12', 'wait=NaN', 'wait=', 'wait=1.5']) add(`Prefer: ${v}`, post(P, [['Prefer', v]]), { expect: [200] }); // RFC 7240: ignored (issue 12)
  add('Prefer: respond-async twice', post(P, [['Prefer', 'respond-async, respond-async']]), { expect: [200, 202] });
  add('Prefer: wait=99999999', post(P, [['Prefer', 'wait=99999999']]), { expect: [200] });
  add('X-Request-Id with CRLF-free junk', post(P, [['X-Request-Id', '<script>alert(1)</script>']]), { expect: [200] });
  add('Authorization garbage (dev mode ignores it)', post(P, [['Authorization', 'Bearer \u00ff\u00fe']]), { expect: [200, 400] });
  add('Expect: 100-continue', post(P, [['Expect', '100-continue']]), { expect: [200] });
  add('Expect: unknown', post(P, [['Expect', 'teapot']]), { expect: [417] });
  add('missing Host', `POST ${P} HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, { expect: [400] });
  // Paths (the forwarded part after the service)
  for (const p of [
    '/%2e%2e/secret', '/..%2fsecret', '/%252e%252e/secret', '/a/%2e/b', '//evil.example/x', '/%2F%2Fevil.example', '/@evil.example', '/a\\b',
    '/%5c..%5csecret', '/a%00b', '/%0d%0aInjected:%20x', '/http://evil.example/', '/%68ttp://evil.example', '/%zz', '/%', '/%E2%80%A4%E2%80%A4/x',
    '/%EF%BC%8E%EF%BC%8E/x', '/..', '/.', '/a/../../b', '/%2e%2e', '/%u002e%u002e', '/a;/../b', '/a?x=%0d%0a',
  ]) {
    add(`path ${p}`, post(`/v1/services/echo${p}`), { expect: [200, 400, 404] });
  }
  // The CR LF ends the request line early: what follows is a header the allow-list drops, not a path.
  add('raw CR LF in the path', `POST ${P}/a\r\nInjected: x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`, { expect: [200, 400] });
  add('raw NUL in the path', `POST ${P}/a\u0000b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`, { expect: [400] });
  add('raw space in the path', `POST ${P}/a b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`, { expect: [400] });
  add('raw tab in the path', `POST ${P}/a\tb HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`, { expect: [400] });
  add('unknown service', post('/v1/services/nope/echo'), { expect: [404] });
  add('service name with dots', post('/v1/services/gw.echo.work/echo'), { expect: [404] });
  add('service name traversal', post('/v1/services/..%2fecho/echo'), { expect: [400, 404] });
  add('8 KiB path (over MAX_URL_BYTES)', post(`${P}/${'p'.repeat(8 * 1024)}`), { expect: [414] });
  add('4 KiB path', post(`${P}/${'p'.repeat(4 * 1024)}`), { expect: [200] });
  add('20 KiB path (over the head limit)', post(`${P}/${'p'.repeat(20 * 1024)}`), { expect: [431] });
  add('query with 1,000 params', post(`${P}?${Array.from({ length: 1000 }, (_, i) => `k${i}=v`).join('&')}`), { expect: [200] });
  add('absolute-form target', post(`http://evil.example${P}`), { expect: [200, 400, 404] });
  add('asterisk-form target', req('OPTIONS', '*'), { expect: [400, 404] });
  add('authority-form CONNECT', req('CONNECT', 'evil.example:443'), { expect: [405] });
  add('empty target', `POST  HTTP/1.1\r\nHost: x\r\n\r\n`, { expect: [400] });
  // Methods and protocol
  for (const m of ['FOO', 'get', 'M-SEARCH', 'PROPFIND', 'TRACE', 'PURGE', 'LINK']) add(`method ${m}`, req(m, P), { expect: [400, 404, 405] });
  add('HTTP/0.9 request', `GET ${P}\r\n`, { expect: [400, 408], closeOk: 'HTTP/0.9 has no status line to answer with' });
  add('HTTP/2 preface on HTTP/1.1', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', { expect: [400, 505] });
  add('HTTP/3.0 version', `GET ${P} HTTP/3.0\r\nHost: x\r\n\r\n`, { expect: [400, 505] });
  add('binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x00]), { expect: [400] });
  // JSON and content types (bodies travel as raw bytes: never parsed, never re-encoded)
  add('invalid UTF-8 JSON', post(P, [['Content-Type', 'application/json']], '{"a":"\u00ff\u00fe"}'), { expect: [200] });
  add('10,000-deep JSON', post(P, [['Content-Type', 'application/json']], `${'['.repeat(10_000)}${']'.repeat(10_000)}`), { expect: [200] });
  add('__proto__ keys', post(P, [['Content-Type', 'application/json']], '{"__proto__":{"polluted":1},"constructor":{"prototype":{"x":1}}}'), { expect: [200] });
  add('huge numbers', post(P, [['Content-Type', 'application/json']], `{"n":1e999999,"m":${'9'.repeat(5000)}}`), { expect: [200] });
  add('duplicate JSON keys', post(P, [['Content-Type', 'application/json']], '{"a":1,"a":2}'), { expect: [200] });
  add('wrong content-type', post(P, [['Content-Type', 'text/xml']], '{"json":true}'), { expect: [200] });
  add('content-type garbage', post(P, [['Content-Type', ';;;charset=\u00ff']]), { expect: [200, 400, 415] });
  add('multipart without boundary', post(P, [['Content-Type', 'multipart/form-data']], '--x'), { expect: [200] });
  return cases;
}

/** Slow requests bounded by the server's timeouts (REQUEST_TIMEOUT_MS / HEADERS_TIMEOUT_MS). */
export function slowCorpus(): HostileCase[] {
  const head = `POST ${P} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n`;
  return [
    { name: 'slow body: 10 of 100 bytes then silence', chunks: [head, 'a'.repeat(10)], timeoutMs: 8000, expect: [408] },
    { name: 'slow drip body: 1 byte every 300 ms', chunks: [head, ...Array.from({ length: 30 }, () => 'd')], gapMs: 300, timeoutMs: 12_000, expect: [408] },
    { name: 'slow head: half a header line then silence', chunks: [`POST ${P} HTTP/1.1\r\nHost: x\r\nX-Slow: a`], timeoutMs: 8000, expect: [408] },
  ];
}

const pathChar = fc.constantFrom('a', 'Z', '0', '-', '_', '.', '..', '/', '//', '%', '%2e', '%2E', '%2f', '%5c', '%00', '%0d', '%0a', '%25', '@', ':', ';', '~', '\\', '%E2%80%A4', '%C0%AE', '?', '#', '&', '=', '+', '*', '%ZZ');
const headerName = fc.constantFrom('CC', 'BCC', 'x-death', 'x-match', 'x-delivery-count', 'user-id', 'reply-to', 'correlation-id', 'expiration', 'priority',
  'gw-tenant', 'gw-attempt', 'gw-deadline', 'gw-headers', 'x-tenant', 'Accept', 'Content-Type', 'Accept-Language', 'If-Match', 'User-Agent', 'traceparent', 'Prefer', 'X-Request-Id');
const headerValue = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: fc.constantFrom('a', 'b', '1', ' ', ',', ';', '=', '"', '[', ']', '{', '}', '/', 'ü', '\u00ff', '-', '.'), maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constantFrom('a\rb', 'a\u0000b', 'a\u0007b', '\u007f', '["trap"]', 'trap', 'wait=-5', 'respond-async', '1'.repeat(9000)) },
);

/** Generated requests: hostile paths, methods and AMQP-shaped headers, reproducible by seed. */
export function generatedCorpus(count: number, seed: number): HostileCase[] {
  const arb = fc.record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'FOO', 'TRACE'),
    path: fc.array(pathChar, { maxLength: 12 }).map((parts) => `/${parts.join('')}`),
    headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }),
    body: fc.string({ maxLength: 64 }),
  });
  return fc.sample(arb, { numRuns: count, seed }).map((c, i) => ({
    name: `generated #${i}: ${c.method} ${JSON.stringify(c.path)} ${JSON.stringify(c.headers.map(([n]) => n))}`,
    chunks: [req(c.method, `/v1/services/echo/echo${c.path}`, c.headers, Buffer.from(c.body, 'utf8'))],
  }));
}
