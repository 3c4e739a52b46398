import { existsSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listRoutes } from '../../enqueuer/app.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { ContractChecker, shapeViolations, type OpenApiDoc } from '../support/openapi-contract.ts';
import { readSse, until } from '../support/sse.ts';
import { pino, type Logger } from 'pino';
import { loggerOptions } from '../../shared/logger.ts';
import { duplicateKeys } from '../support/log-keys.ts';
import { LogSink, Stack } from '../support/stack.ts';

/** Both services' lines with the production logger options (base fields, redaction, ISO time). */
class ProductionLogSink extends LogSink {
  override logger(level = 'info'): Logger {
    return pino(loggerOptions({ level, base: { app: 'gateway' } }), this.stream);
  }
}

/**
 * The contract: the OpenAPI document the enqueuer serves is a valid OpenAPI 3.1 document, every route
 * of the app has an entry in it, and every route answers (status, required headers, body, SSE events)
 * as the document says. The shape rules (one id name, ISO times, one paging shape) are checked over
 * every JSON answer and event on the way.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('API contract: /openapi.json against the live answers of every route', () => {
  const url = brokerUrl();
  let stack: Stack;
  let doc: OpenApiDoc;
  let contract: ContractChecker;
  const logs = new ProductionLogSink();
  const violations: string[] = [];
  const shapes: string[] = [];

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('api contract'),
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 2, baseMs: 50, capMs: 100 } } },
      logs,
    });
    doc = (await (await fetch(`${stack.baseUrl}/openapi.json`)).json()) as OpenApiDoc;
    contract = new ContractChecker(doc);
  });
  afterAll(async () => {
    await stack?.stop(url);
  });

  /** Calls a route and checks the answer against the document; returns status, headers and parsed body. */
  async function call(method: string, template: string, path: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: string; json: unknown }> {
    const res = await fetch(`${stack.baseUrl}${path}`, { method, ...init });
    const body = await res.text();
    const answer = { status: res.status, headers: res.headers, body };
    violations.push(...contract.check(method, template, answer));
    const isJson = (res.headers.get('content-type') ?? '').includes('json');
    const json = isJson && body ? (JSON.parse(body) as unknown) : undefined;
    if (json !== undefined && template !== '/openapi.json') shapes.push(...shapeViolations(json, `${method} ${path}`));
    return { ...answer, json };
  }

  async function stream(template: string, path: string, timeoutMs: number, stopWhen?: (data: Record<string, unknown>) => boolean) {
    const ac = new AbortController();
    const got = readSse(`${stack.baseUrl}${path}`, timeoutMs, (e) => {
      if (stopWhen?.(e.data)) ac.abort();
    }, ac.signal);
    return { got, ac };
  }

  const checkStream = (template: string, r: Awaited<ReturnType<typeof readSse>>) => {
    violations.push(...contract.checkSse(template, r));
    for (const e of r.events) shapes.push(...shapeViolations(e.data, `${template} event ${e.event}`));
  };

  it('is a valid OpenAPI 3.1 document', async () => {
    expect((doc as unknown as { openapi: string }).openapi).toBe('3.1.0');
    const result = await new Validator().validate(doc as unknown as Parameters<Validator['validate']>[0]);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('documents every route of the app, and nothing the app does not serve', () => {
    const routes = new Set(listRoutes(stack.enqueuer.app!));
    const documented = new Set(contract.operations());
    expect([...routes].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !routes.has(r))).toEqual([]);
  });

  it('answers every route as documented', async () => {
    // health and reference
    await call('GET', '/healthz', '/healthz');
    await call('GET', '/readyz', '/readyz');
    await call('GET', '/metrics', '/metrics');
    await call('GET', '/openapi.json', '/openapi.json');
    const page = await call('GET', '/docs', '/docs');
    expect(page.body).toContain('swagger-ui');
    expect((await call('GET', '/docs/init.js', '/docs/init.js')).body).toContain('/openapi.json');

    // forwarding: every documented method, sync; then async jobs
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) {
      const body = method === 'GET' || method === 'DELETE' ? undefined : 'hello';
      const r = await call(method, '/v1/services/{service}/{path}', '/v1/services/echo/echo', { body, headers: { 'content-type': 'text/plain' } });
      expect(r.status, method).toBe(200);
    }
    await call('POST', '/v1/services/{service}/{path}', '/v1/services/nope/echo', { body: 'x' });
    await call('POST', '/v1/services/{service}/{path}', '/v1/services/echo/echo', { body: 'x', headers: { prefer: 'wait=1', 'gw-delay-ms': '5' } });

    const t0 = Date.now();
    // a job that succeeds (its stream), one the downstream refuses (it lands in the DLQ)
    let finished = 0;
    const all = await stream('/v1/events', '/v1/events?service=echo', 20_000, (d) => ['failed', 'succeeded'].includes(d.state as string) && ++finished === 2);
    await until(() => (stack.enqueuer.readiness().ready ? true : undefined));
    const accepted = await call('POST', '/v1/services/{service}/{path}', '/v1/services/echo/echo', { body: 'job', headers: { prefer: 'respond-async', 'content-type': 'text/plain' } });
    expect(accepted.status).toBe(202);
    const okId = (accepted.json as { id: string }).id;
    const refused = await call('POST', '/v1/services/{service}/{path}', '/v1/services/echo/status/400', { body: 'bad', headers: { prefer: 'respond-async' } });
    const badId = (refused.json as { id: string }).id;
    await until(async () => ((await (await fetch(`${stack.baseUrl}/v1/jobs/${badId}`)).json()) as { state: string }).state === 'failed' || undefined, 20_000);
    await until(async () => ((await (await fetch(`${stack.baseUrl}/v1/jobs/${okId}`)).json()) as { state: string }).state === 'succeeded' || undefined, 20_000);
    const tJobs = Date.now();
    const everything = await all.got;
    checkStream('/v1/events', everything);
    expect(everything.events.map((e) => e.data.id)).toEqual(expect.arrayContaining([okId, badId]));

    const one = await readSse(`${stack.baseUrl}/v1/jobs/${okId}/events`, 10_000);
    checkStream('/v1/jobs/{id}/events', one);
    expect(one.events.at(-1)!.event).toBe('succeeded');
    await call('GET', '/v1/jobs/{id}/events', '/v1/jobs/no-such-job/events');

    // jobs: one, none, a page with a next page (body `next` and Link), a malformed query
    const job = await call('GET', '/v1/jobs/{id}', `/v1/jobs/${badId}`);
    expect((job.json as { error: { code: string } }).error.code).toBe('GW_ERR_DOWNSTREAM_STATUS');
    await call('GET', '/v1/jobs/{id}', '/v1/jobs/no-such-job');
    const first = await call('GET', '/v1/jobs', '/v1/jobs?service=echo&limit=1');
    const next = (first.json as { next: string | null }).next;
    expect(next).not.toBeNull();
    expect(first.headers.get('link')).toBe(`</v1/jobs?service=echo&limit=1&cursor=${encodeURIComponent(next!)}>; rel="next"`);
    const last = await call('GET', '/v1/jobs', `/v1/jobs?service=echo&limit=1&cursor=${next}`);
    expect((last.json as { items: Array<{ id: string }>; next: string | null }).next).toBeNull();
    expect(last.headers.get('link')).toBeNull();
    await call('GET', '/v1/jobs', '/v1/jobs?state=nope');

    const tDlq = Date.now();
    // DLQ: browse, replay (dry run), discard, discard again (404), unknown service
    const dlq = await until(async () => {
      const r = await call('GET', '/v1/dlq/{service}', '/v1/dlq/echo');
      return (r.json as { items: unknown[] }).items.length > 0 ? r : undefined;
    }, 20_000, 200);
    expect((dlq.json as { items: Array<{ id: string }>; next: string | null; total: number })).toMatchObject({ items: [{ id: badId }], next: null, total: 1 });
    const replay = await call('POST', '/v1/dlq/{service}/replay', '/v1/dlq/echo/replay', { body: JSON.stringify({ ids: [badId], dryRun: true }), headers: { 'content-type': 'application/json' } });
    expect(replay.json).toEqual({ service: 'echo', replayed: [badId], notFound: [], dryRun: true });
    await call('POST', '/v1/dlq/{service}/replay', '/v1/dlq/echo/replay', { body: '{"nope":1}', headers: { 'content-type': 'application/json' } });
    // workbench: groups, replay and discard dry runs by group, a malformed selection
    const groups = await call('GET', '/v1/dlq/{service}/groups', '/v1/dlq/echo/groups');
    const group = (groups.json as { items: Array<{ id: string; status: number; code: string; ids: string[]; count: number }> }).items[0]!;
    expect(group).toMatchObject({ status: 400, code: 'GW_ERR_DOWNSTREAM_STATUS', ids: [badId], count: 1 });
    const asJson = (b: unknown) => ({ body: JSON.stringify(b), headers: { 'content-type': 'application/json' } });
    const dry = await call('POST', '/v1/dlq/{service}/replays', '/v1/dlq/echo/replays', asJson({ group: group.id, dryRun: true, ratePerS: 5 }));
    expect(dry.json).toMatchObject({ service: 'echo', target: 'echo', action: 'replay', dryRun: true, ids: [badId], auditId: null });
    await call('POST', '/v1/dlq/{service}/replays', '/v1/dlq/echo/replays', asJson({ ids: [badId], group: group.id }));
    expect((await call('POST', '/v1/dlq/{service}/discards', '/v1/dlq/echo/discards', asJson({ group: group.id, dryRun: true, reason: 'contract' }))).json).toMatchObject({ ids: [badId], dryRun: true });
    expect((await call('POST', '/v1/dlq/{service}/discards', '/v1/dlq/echo/discards', asJson({ ids: [badId] }))).status).toBe(400);
    expect((await call('DELETE', '/v1/dlq/{service}/{id}', `/v1/dlq/echo/${badId}`)).status).toBe(204);
    expect((await call('DELETE', '/v1/dlq/{service}/{id}', `/v1/dlq/echo/${badId}`)).status).toBe(404);
    await call('GET', '/v1/dlq/{service}', '/v1/dlq/nope');
    const discarded = await call('POST', '/v1/dlq/{service}/discards', '/v1/dlq/echo/discards', asJson({ ids: [badId], reason: 'gone already' }));
    expect(discarded.json).toMatchObject({ ids: [], notFound: [badId], dryRun: false });
    const audit = await call('GET', '/v1/audit', '/v1/audit?service=echo&limit=1');
    expect((audit.json as { items: Array<{ action: string; reason?: string }> }).items[0]).toMatchObject({ action: 'discard', reason: 'gone already' });
    expect(audit.headers.get('link')).toContain('/v1/audit?service=echo&limit=1&cursor=');
    await call('GET', '/v1/audit', '/v1/audit?limit=0');

    // dashboard: overview, a job's timeline, cancel a delayed job (then 409), an unknown job (404)
    const overview = await call('GET', '/v1/overview', '/v1/overview');
    expect((overview.json as { services: Array<{ service: string }> }).services.map((x) => x.service)).toEqual(['echo']);
    const timeline = await call('GET', '/v1/jobs/{id}/timeline', `/v1/jobs/${okId}/timeline`);
    expect((timeline.json as { items: Array<{ state: string }> }).items.map((e) => e.state)).toEqual(['queued', 'running', 'succeeded']);
    expect((timeline.json as { request: unknown }).request).toMatchObject({ method: 'POST', path: '/echo', bodyBytes: 3 });
    await call('GET', '/v1/jobs/{id}/timeline', '/v1/jobs/no-such-job/timeline');
    const delayed = await call('POST', '/v1/services/{service}/{path}', '/v1/services/echo/echo', { body: 'later', headers: { prefer: 'respond-async', 'gw-delay-ms': '60000' } });
    const delayedId = (delayed.json as { id: string }).id;
    expect((await call('POST', '/v1/jobs/{id}/cancel', `/v1/jobs/${delayedId}/cancel`, asJson({ reason: 'contract' }))).json).toMatchObject({ id: delayedId, state: 'cancelled' });
    expect((await call('POST', '/v1/jobs/{id}/cancel', `/v1/jobs/${delayedId}/cancel`)).status).toBe(409);
    expect((await call('POST', '/v1/jobs/{id}/cancel', '/v1/jobs/no-such-job/cancel')).status).toBe(404);

    console.log(`timings: jobs ${tJobs - t0} ms, streams ${tDlq - tJobs} ms, dlq ${Date.now() - tDlq} ms`);
    expect(violations).toEqual([]);
    expect(shapes).toEqual([]);
    expect([...contract.operations()].filter((op) => !contract.covered.has(op))).toEqual([]);
    console.log(`API contract: ${contract.covered.size} operations, every answer valid against /openapi.json`);
  });

  it('renders /docs in headless Chromium with every route listed, from local assets only (screenshot: docs/api-reference.png)', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} (apt-get install chromium)`).toBe(true);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const foreign: string[] = [];
      page.on('request', (r) => {
        if (!r.url().startsWith(stack.baseUrl) && !r.url().startsWith('data:')) foreign.push(r.url());
      });
      await page.goto(`${stack.baseUrl}/docs`);
      await page.waitForSelector('.opblock-summary-path', { timeout: 20_000 });
      const listed = await page.$$eval('.opblock', (blocks) =>
        blocks.map((b) => `${b.querySelector('.opblock-summary-method')?.textContent?.trim()} ${b.querySelector('.opblock-summary-path')?.getAttribute('data-path')}`),
      );
      expect(new Set(listed)).toEqual(new Set(contract.operations()));
      expect(foreign).toEqual([]);
      await page.screenshot({ path: 'docs/api-reference.png', fullPage: true });
    } finally {
      await browser.close();
    }
  });

  it('logs no key twice in any line of either service, and one info line per request with duration, status and ids', () => {
    const components = new Set(logs.lines.map((l) => l.component));
    expect([...components]).toEqual(expect.arrayContaining(['enqueuer', 'dequeuer', 'dlq']));
    const twice = logs.raw.map((line) => ({ line, keys: duplicateKeys(line) })).filter((d) => d.keys.length > 0);
    expect(twice).toEqual([]);
    const requests = logs.lines.filter((l) => l.msg === 'request');
    expect(requests.length).toBeGreaterThanOrEqual(30);
    for (const r of requests) {
      expect(r).toMatchObject({ level: 'info', requestId: expect.any(String), method: expect.any(String), status: expect.any(Number), durationMs: expect.any(Number) });
    }
    const job = requests.find((r) => r.status === 202);
    expect(job).toMatchObject({ jobId: expect.any(String), tenant: 'default', service: 'echo', route: '/v1/services/:service{/*path}' });
    console.log(`logs: ${logs.raw.length} lines from both services, 0 with a repeated key; ${requests.length} request lines`);
  });
});
