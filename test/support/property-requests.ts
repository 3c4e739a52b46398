import { request, type Agent, type IncomingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import { ERRORS, isErrorCode, PROBLEM_TYPE_BASE, problemSlug } from '../../shared/errors.ts';

/**
 * Generated requests for the property-based test of the `/v1` API (test/e2e/api-properties.test.ts):
 * the operations come from the OpenAPI document the enqueuer serves, so a route added to a router's
 * RouteDoc is generated for without touching this file. Ids and keys are drawn by index from pools
 * the test fills at run time (job ids are random), so a seed reproduces the same shapes of requests.
 */

/** The defaults CI runs with (README's security section quotes them; test/unit/readme.test.ts checks it). */
export const PROPERTY_DEFAULTS = { seed: 20261202, runs: 1200, rawRuns: 300 } as const;

/** One operation of the document, with what its parameters are called. */
export interface Operation {
  method: string;
  template: string;
  pathParams: string[];
  query: string[];
  headers: string[];
  hasBody: boolean;
  /** Statuses the document lists for it. */
  statuses: Set<number>;
  /** Its 200 is an event stream. */
  stream: boolean;
}

interface DocParameter {
  name: string;
  in: string;
}
interface DocOperation {
  parameters?: DocParameter[];
  requestBody?: unknown;
  responses: Record<string, { content?: Record<string, unknown> }>;
}

/** Every operation under `/v1` of an OpenAPI document. */
export function v1Operations(doc: { paths: Record<string, Record<string, DocOperation>> }): Operation[] {
  const out: Operation[] = [];
  for (const [template, ops] of Object.entries(doc.paths)) {
    if (!template.startsWith('/v1/') && template !== '/v1') continue;
    for (const [method, op] of Object.entries(ops)) {
      const params = op.parameters ?? [];
      out.push({
        method: method.toUpperCase(),
        template,
        pathParams: [...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!),
        query: params.filter((p) => p.in === 'query').map((p) => p.name),
        headers: params.filter((p) => p.in === 'header').map((p) => p.name.toLowerCase()),
        hasBody: op.requestBody !== undefined,
        statuses: new Set(Object.keys(op.responses).map(Number)),
        stream: op.responses['200']?.content?.['text/event-stream'] !== undefined,
      });
    }
  }
  return out;
}

/** A path parameter, query value, header or body as the generator chose it (indices resolve against the pools). */
export type Part = { kind: 'lit'; value: string } | { kind: 'id'; index: number } | { kind: 'service'; name: string };

/** One generated request: which operation, then every part of it. */
export interface Case {
  /** `METHOD /template` of the operation (stable across documents, so regression examples keep). */
  op: string;
  /** Send the documented method (most cases) or this one. */
  method: string | undefined;
  params: Part[];
  /** Appended after the template's path (extra segments, hostile suffixes). */
  suffix: string;
  query: Array<[string, Part]>;
  headers: Array<[string, Part]>;
  key: number;
  body: { type: 'none' } | { type: 'text'; value: string } | { type: 'bytes'; size: number; fill: number } | { type: 'replay'; ids: number[]; all: boolean; dryRun: boolean };
  /** Identical copies sent at once (races on the same key, slot or DLQ queue). */
  copies: number;
}

const SERVICE_NAMES = ['echo', 'other', 'nope', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'ECHO', 'echo.', 'e%63ho', '%2e%2e', '..;', 'a'.repeat(70)];

/** Raw path characters Node's client lets through (0x21-0xff), hostile ones weighted in. */
const pathPiece = fc.oneof(
  { weight: 5, arbitrary: fc.stringMatching(/^[A-Za-z0-9._~-]{1,12}$/) },
  { weight: 3, arbitrary: fc.constantFrom('..', '.', '..;', '..;x', '%2e%2e', '%2e%2e;', '%252e%252e', '%25252e%25252e', '%2F', '%2f..', '%00', '%0d%0a', '%20', '%09', '%', '%zz', '%c0%ae', ';', ';jsessionid=1', '@', ':', '~', '*', '!', '$', '&', "'", '(', ')', '+', ',', '=', '\u00e9', '%E2%80%A8', '%EF%BF%BF', '%F0%9F%98%80') },
);
/** Raw path text; now and then longer than a segment should be, or than the URL limit (414). */
const rawPath = fc.oneof(
  { weight: 20, arbitrary: fc.array(pathPiece, { minLength: 1, maxLength: 5 }).map((p) => p.join('')) },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(300), 'y'.repeat(9000)) },
);

/** What goes in `{path}` of the services route: demo routes that answer at once, or hostile paths. */
const forwardedPath = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom('echo', 'headers', 'status/404', 'status/201', 'status/204', 'status/409', 'status/299', 'status/400', 'delay/20', 'nothing-here') },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('echo', 'headers', 'status/404'), fc.constantFrom('/..;/admin', '/%2e%2e;/admin', '/a/..;/..;/admin', '//x', '/x//y', '/%2F%2F', '/%20', '/.', '/./x', '/%252e%252e/x', '/;', '/x;y', '')).map(([a, b]) => a + b) },
  { weight: 2, arbitrary: fc.array(rawPath, { minLength: 1, maxLength: 3 }).map((p) => p.join('/')) },
);

const idPart: fc.Arbitrary<Part> = fc.nat({ max: 1_000 }).map((index) => ({ kind: 'id', index }));
const servicePart: fc.Arbitrary<Part> = fc.constantFrom(...SERVICE_NAMES).map((name) => ({ kind: 'service', name }));
const configuredService: fc.Arbitrary<Part> = fc.constantFrom('echo', 'other').map((name) => ({ kind: 'service', name }));
const lit = (a: fc.Arbitrary<string>): fc.Arbitrary<Part> => a.map((value) => ({ kind: 'lit', value }));

function paramPart(name: string): fc.Arbitrary<Part> {
  if (name === 'service') return fc.oneof({ weight: 12, arbitrary: configuredService }, { weight: 4, arbitrary: servicePart }, { weight: 1, arbitrary: lit(rawPath) });
  if (name === 'path') return lit(forwardedPath);
  return fc.oneof({ weight: 10, arbitrary: idPart }, { weight: 2, arbitrary: lit(rawPath) }, { weight: 1, arbitrary: lit(fc.uuid()) });
}

const queryValue = fc.oneof(
  { weight: 4, arbitrary: lit(fc.constantFrom('1', '0', '-1', '2', '100', '101', '1000', '99999999999999999999', '1e3', '0x10', 'abc', '', 'queued', 'running', 'succeeded', 'failed', 'QUEUED', 'true', 'null', '[]', '%00', '%', '%zz', 'a%26b%3Dc')) },
  { weight: 2, arbitrary: servicePart },
  { weight: 1, arbitrary: idPart },
  { weight: 1, arbitrary: lit(fc.stringMatching(/^[A-Za-z0-9%._~-]{0,40}$/)) },
);

/** Header values by name; anything a header can carry (tab, 0x20-0x7e, 0x80-0xff) for the rest. */
const HEADER_VALUES: Record<string, readonly string[]> = {
  prefer: ['respond-async', 'wait=1', 'respond-async, wait=1', 'respond-async; wait=2', 'respond-async, wait=0', 'wait=99999999999', 'waitress=1', 'handling=lenient', 'respond-async, wait=abc', 'return=minimal', 'RESPOND-ASYNC'],
  'idempotency-key': ['"k1"', '"k2"', 'k1', '""', `"${'i'.repeat(300)}"`, '"k\u00e9"', '"a","b"'],
  'gw-delay-ms': ['0', '1', '50', '3600000', '-1', 'abc', '1e3', '99999999999999', '1.5', ''],
  'gw-not-before': ['2030-02-30T00:00:00Z', '2026-12-02T24:00:00Z', '2020-01-01T00:00:00Z', 'Wed, 21 Oct 2099 07:28:00 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT', 'garbage', '2099-01-01T00:00:00+25:00', ''],
  'x-request-id': ['r-1', 'x'.repeat(300), 'a b', '\u00ff', '"quoted"'],
  traceparent: ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'garbage'],
  tracestate: ['a=1,b=2', `${'k=v,'.repeat(200)}z=1`, 'bad entry,=x,k=', `vendor=${'x'.repeat(600)}`],
  'content-type': ['application/json', 'text/plain', 'application/json; charset=utf-8', `text/${'x'.repeat(300)}`, 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', '', 'a/b; c="\u00e9"', ';;;', 'application/x-www-form-urlencoded'],
  'content-encoding': ['gzip', 'br', 'deflate', 'identity', 'x', 'gzip, identity'],
  accept: ['text/event-stream', 'application/json', '*/*', 'text/html', 'application/problem+json', ''],
  expect: ['200-ok', 'nothing'],
  'x-tenant': ['<A>', '<B>'],
  'gw-tenant': ['<A>', '<B>'],
  'last-event-id': ['0', '99999', '-1', 'abc'],
  'x-forwarded-for': ['10.0.0.1', '::1', 'garbage, 1.1.1.1'],
  cookie: ['a=b', 'session=x'.repeat(50)],
  range: ['bytes=0-1', 'bytes=abc'],
  'if-none-match': ['*', '"x"'],
  'x-http-method-override': ['DELETE', 'PUT'],
  authorization: ['Bearer', 'Bearer gwk_', 'Basic Zm9vOmJhcg==', 'bearer <KEY>', 'Bearer <KEY>, Bearer <KEY>'],
};
const anyHeaderValue = fc.string({ unit: fc.constantFrom('a', 'Z', '0', ' ', '\t', ',', ';', '=', '"', '/', '\\', '{', '}', '\u00e9', '\u00ff', '\u0080', '%', '-'), maxLength: 40 });

function headerPart(name: string): fc.Arbitrary<Part> {
  // Mostly fresh keys (a first request runs), sometimes the shared ones (replays, 422 for another request, 409 while in flight).
  if (name === 'idempotency-key') return fc.oneof({ weight: 3, arbitrary: lit(fc.stringMatching(/^[a-z0-9]{6,16}$/).map((k) => `"${k}"`)) }, { weight: 2, arbitrary: lit(fc.constantFrom(...HEADER_VALUES[name]!)) }, { weight: 1, arbitrary: lit(anyHeaderValue) });
  const known = HEADER_VALUES[name];
  return known ? fc.oneof({ weight: 4, arbitrary: lit(fc.constantFrom(...known)) }, { weight: 1, arbitrary: lit(anyHeaderValue) }) : lit(anyHeaderValue);
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'PROPFIND', 'PURGE', 'M-SEARCH', 'LOCK', 'QUERY'];

const body: fc.Arbitrary<Case['body']> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ type: 'none' as const }) },
  { weight: 3, arbitrary: fc.json({ maxDepth: 3 }).map((value) => ({ type: 'text' as const, value })) },
  { weight: 2, arbitrary: fc.string({ maxLength: 64 }).map((value) => ({ type: 'text' as const, value })) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('replay' as const), ids: fc.array(fc.nat({ max: 1_000 }), { maxLength: 4 }), all: fc.boolean(), dryRun: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constantFrom('{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '['.repeat(5000), '{"ids":"x"}', '{"ids":[1,2]}', '{"all":"yes"}', '{"ids":[],"all":true}', 'null', '\u0000', '\ufeff{}').map((value) => ({ type: 'text' as const, value })) },
  // Past the test stack's 64 KiB body limit: 413.
  { weight: 1, arbitrary: fc.record({ type: fc.constant('bytes' as const), size: fc.constantFrom(1, 4096, 65_535, 65_536, 65_537, 200_000), fill: fc.nat({ max: 255 }) }) },
);

/** Generated requests over the operations of the document. */
export function caseArbitrary(ops: readonly Operation[], keyCount: number): fc.Arbitrary<Case> {
  const common = ['prefer', 'idempotency-key', 'content-type', 'accept', 'gw-delay-ms', 'gw-not-before', 'traceparent', 'tracestate', 'x-request-id'];
  const rare = Object.keys(HEADER_VALUES).filter((n) => !common.includes(n));
  return fc.nat({ max: ops.length - 1 }).chain((index) => {
    const o = ops[index]!;
    const documented = [...new Set([...o.headers, ...common])];
    const headerName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...documented) }, { weight: 1, arbitrary: fc.constantFrom(...rare) });
    return fc.record({
      op: fc.constant(`${o.method} ${o.template}`),
      method: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
      params: fc.tuple(...o.pathParams.map(paramPart)) as unknown as fc.Arbitrary<Part[]>,
      suffix: fc.oneof({ weight: 16, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('/', '//', '/..', '/x', '/%2e%2e', '?', '#x', ';x', '.json') }),
      query: fc.oneof(
        { weight: 2, arbitrary: fc.constant<Array<[string, Part]>>([]) },
        { weight: 3, arbitrary: fc.array(fc.tuple(fc.oneof({ weight: 6, arbitrary: o.query.length ? fc.constantFrom(...o.query) : fc.constant('limit') }, { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'limit[]', 'limit[$gt]', 'state[0]', 'a') }), queryValue), { minLength: 1, maxLength: 3 }) },
      ),
      // Prefer and Idempotency-Key decide the path a request takes through the services route: often on their own.
      headers: fc.tuple(
        fc.option(headerPart('prefer').map((v) => ['prefer', v] as [string, Part]), { freq: 2 }),
        fc.option(headerPart('idempotency-key').map((v) => ['idempotency-key', v] as [string, Part]), { freq: 4 }),
        fc.oneof({ weight: 2, arbitrary: fc.constant<Array<[string, Part]>>([]) }, { weight: 3, arbitrary: fc.array(headerName.chain((name) => fc.tuple(fc.constant(name), headerPart(name))), { minLength: 1, maxLength: 3 }) }),
      ).map(([prefer, idem, rest]) => [...(prefer ? [prefer] : []), ...(idem ? [idem] : []), ...rest]),
      key: fc.oneof({ weight: 12, arbitrary: fc.nat({ max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 4, max: keyCount - 1 }) }),
      body: o.hasBody ? fc.oneof({ weight: 3, arbitrary: body }, { weight: 1, arbitrary: fc.constant({ type: 'none' as const }) }) : fc.oneof({ weight: 5, arbitrary: fc.constant({ type: 'none' as const }) }, { weight: 1, arbitrary: body }),
      copies: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 3 }) }),
    });
  });
}

/** One request as it goes on the wire. */
export interface Wire {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

/** One answer: status 0 when the connection failed without one. */
export interface WireAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  error?: string;
}

/**
 * Sends one request with node:http (any method token, any header byte Node allows), reads the answer
 * (an event stream for `streamMs`, then closes it) and never rejects.
 */
export function send(port: number, agent: Agent, w: Wire, streamMs: number, timeoutMs = 20_000): Promise<WireAnswer> {
  return new Promise((resolve) => {
    let req: ReturnType<typeof request>;
    try {
      req = request({ host: '127.0.0.1', port, method: w.method, path: w.path, headers: w.headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const stream = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
        const timer = stream ? setTimeout(() => res.destroy(), streamMs) : undefined;
        const done = (): void => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        };
        res.on('data', (c: Buffer) => {
          if (size < 1 << 20) chunks.push(c);
          size += c.length;
        });
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
      });
    } catch (err) {
      resolve({ status: 0, headers: {}, body: Buffer.alloc(0), error: `not sendable: ${(err as Error).message}` });
      return;
    }
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (err) => resolve({ status: 0, headers: {}, body: Buffer.alloc(0), error: err.message }));
    req.end(w.body);
  });
}

/**
 * What is wrong with an error answer (status ≥ 400) as a problem: `application/problem+json`, a
 * registry code whose status is the answer's, the matching `type`. Empty when it is right.
 */
export function problemViolations(status: number, headers: IncomingHttpHeaders, body: Buffer, head: boolean): string[] {
  const type = String(headers['content-type'] ?? '').split(';')[0]!.trim();
  if (type !== 'application/problem+json') return [`${status} with content-type ${JSON.stringify(headers['content-type'])}, not application/problem+json`];
  if (head) return [];
  let p: { code?: unknown; status?: unknown; type?: unknown };
  try {
    p = JSON.parse(body.toString('utf8')) as typeof p;
  } catch {
    return [`${status} problem body is not JSON: ${JSON.stringify(body.toString('utf8').slice(0, 200))}`];
  }
  if (!isErrorCode(p.code)) return [`${status} problem code ${JSON.stringify(p.code)} is not in the registry`];
  const out: string[] = [];
  if (ERRORS[p.code].status !== status) out.push(`${status} answered with ${p.code}, registered as ${ERRORS[p.code].status}`);
  if (p.status !== status) out.push(`${status} problem says status ${JSON.stringify(p.status)}`);
  if (p.type !== PROBLEM_TYPE_BASE + problemSlug(p.code)) out.push(`${p.code} problem type ${JSON.stringify(p.type)}`);
  return out;
}

/** Writes a case as a `curl`-like line for the failure report. */
export function describeWire(w: Wire): string {
  const headers = Object.entries(w.headers).map(([n, v]) => `${n}: ${n === 'authorization' ? v.slice(0, 14) + '…' : v.slice(0, 120)}`);
  return `${w.method} ${w.path.slice(0, 300)} [${headers.join(' | ')}]${w.body ? ` body ${w.body.length} B ${JSON.stringify(w.body.subarray(0, 80).toString('latin1'))}` : ''}`;
}

/** One request written byte for byte (test/support/raw-http.ts): malformed request lines, heads and framing. */
export interface RawCase {
  op: string;
  method: string;
  target: string | undefined;
  version: string;
  headers: string[];
  eol: string;
  body: string;
  /** Add a Content-Length for the body (else its bytes are pipelined after the head as a next "request"). */
  frame: boolean;
  key: number;
}

/** Malformed request lines, header fields and framing, at the operations that answer and end (no event streams). */
export function rawCaseArbitrary(ops: readonly Operation[]): fc.Arbitrary<RawCase> {
  const ending = ops.filter((o) => !o.stream);
  return fc.record({
    op: fc.constantFrom(...ending.map((o) => `${o.method} ${o.template}`)),
    method: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 2, arbitrary: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT') }, { weight: 2, arbitrary: fc.constantFrom('get', 'G ET', 'GET\u0000', 'CONNECT', 'PRI', '\u0016\u0003\u0001', 'FOO', 'TRACE', 'GET\t', 'POST\r', '-', 'M-SEARCH') }),
    target: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: fc.constantFrom('*', 'http://evil.example/v1/jobs', 'http://gw.test/v1/jobs', '/v1/jobs\u0000', '/v1/jobs x', '/v1/%', '//v1/jobs', '/v1/services/echo/..;/admin', '/v1/jobs#frag', '/v1/jobs?\u007f', '\u00ff/v1', '/v1/services/echo/echo\r\nX-Injected: 1', '', '/v1/services/echo/echo?a=\u00e9', `/v1/jobs?limit=${'9'.repeat(10_000)}`) }),
    version: fc.oneof({ weight: 6, arbitrary: fc.constant('HTTP/1.1') }, { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.1x', '', 'http/1.1', 'HTTP/1.11', 'HTTP/9.9', 'HTTP/1.1 extra') }),
    headers: fc.array(fc.constantFrom('Host: gw.test', 'Host: a\r\nHost: b', 'X-A:\u0000b', 'X-A b: c', ' folded', '\tfolded', 'Content-Length: 3', 'Content-Length: -1', 'Content-Length: 1, 2', 'Content-Length: 0x3', 'Transfer-Encoding: chunked', 'Transfer-Encoding: xchunked', 'Transfer-Encoding: chunked, identity', 'Transfer-Encoding: chunked\r\nContent-Length: 3', 'Content-Length: 1\r\nContent-Length: 2', ': empty-name', 'X-Long: ' + 'l'.repeat(20_000), 'Expect: 100-continue', 'Expect: 200-ok', 'Upgrade: websocket\r\nConnection: upgrade', 'Prefer: respond-async', 'Content-Type: application/json', 'Content-Encoding: gzip', 'X-\u00e9: 1', 'X-A: \u00e9\u00ff'), { maxLength: 4 }),
    eol: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n'),
    body: fc.constantFrom('', 'abc', '0\r\n\r\n', '3\r\nabc\r\n0\r\n\r\n', 'zz\r\nabc\r\n0\r\n\r\n', '{"ids":[],"dryRun":true}', 'GET /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n', ' GARBAGE', '\u0000\r\n\r\n'),
    frame: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    key: fc.nat({ max: 3 }),
  });
}
