import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeRequest, type RequestEnvelope } from '../../shared/envelope.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { Stack } from '../support/stack.ts';

/** `promtool check metrics` on stdin; a missing promtool fails (never skips) with how to install it. */
function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const bin = process.env.PROMTOOL ?? 'promtool';
  const r = spawnSync(bin, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error(`promtool not found ("${bin}"): install the Debian package \`prometheus\` or set PROMTOOL`);
  }
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

describe('Prometheus exposition of both services after real traffic', () => {
  const url = brokerUrl();
  let stack: Stack;
  let enqueuerText = '';
  let dequeuerText = '';

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('metrics exposition'),
      services: { echo: { url: '{DEMO}', timeoutMs: 2000, retry: { maxAttempts: 2, baseMs: 50, capMs: 100 } } },
    });
    // Traffic touching every path: sync ok, 4xx/5xx answers, a 504, an unknown route, jobs that succeed and die.
    const base = stack.baseUrl;
    const requests = [
      fetch(`${base}/v1/services/echo/echo`, { method: 'POST', body: 'a' }),
      fetch(`${base}/v1/services/echo/status/404`),
      fetch(`${base}/v1/services/echo/status/503`),
      fetch(`${base}/v1/services/echo/delay/2500`, { headers: { prefer: 'wait=1' } }),
      fetch(`${base}/v1/services/nope/x`),
      fetch(`${base}/no/such/route/${randomUUID()}`),
      fetch(`${base}/ui/`),
    ];
    for (const r of await Promise.all(requests)) await r.arrayBuffer();
    const conn = await connect(url);
    const ch = await conn.createConfirmChannel();
    const n = stack.topology.names;
    const jobIds: string[] = [];
    for (const path of ['/echo', '/status/503']) {
      const env: RequestEnvelope = {
        jobId: randomUUID(), requestId: randomUUID(), service: 'echo', mode: 'async', method: 'POST', path, query: '',
        headers: {}, tenant: 'default', attempt: 1, enqueuedAt: Date.now(), body: Buffer.from('j'),
      };
      jobIds.push(env.jobId);
      ch.publish(n.workExchange, n.workRoutingKey('echo'), env.body, { ...encodeRequest(env), mandatory: true });
    }
    await ch.waitForConfirms();
    await conn.close();
    const deadline = Date.now() + 15_000;
    for (;;) {
      dequeuerText = await (await fetch(`http://127.0.0.1:${stack.dequeuer!.port}/metrics`)).text();
      if (/gw_jobs_dead_total\{service="echo"[^}]*\} 1/.test(dequeuerText) && /gw_jobs_succeeded_total\{service="echo"[^}]*\} 1/.test(dequeuerText)) break;
      if (Date.now() > deadline) throw new Error('jobs did not finish in 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    enqueuerText = await (await fetch(`${base}/metrics`)).text();
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('passes promtool check metrics for the enqueuer and the dequeuer', () => {
    for (const [name, text] of [['enqueuer', enqueuerText], ['dequeuer', dequeuerText]]) {
      const r = promtoolCheckMetrics(text!);
      expect(r.output, name).toBe('');
      expect(r.status, name).toBe(0);
    }
  });

  it('counts what the traffic did, with the publish kind and route templates as labels', () => {
    expect(enqueuerText).toMatch(/gw_publish_total\{kind="sync",outcome="confirmed",app="enqueuer"\} 4/);
    expect(enqueuerText).toMatch(/gw_reply_timeouts_total\{service="echo",app="enqueuer"\} 1/);
    expect(enqueuerText).toMatch(/gw_http_requests_total\{route="\/v1\/services\/:service\{\/\*path\}",method="GET",status="504",app="enqueuer"\} 1/);
    expect(enqueuerText).toMatch(/gw_http_requests_total\{route="unmatched",method="GET",status="404",app="enqueuer"\} 1/);
    // A static file of the dashboard is labelled with its mount, not `unmatched`.
    expect(enqueuerText).toMatch(/gw_http_requests_total\{route="\/ui\/\*",method="GET",status="200",app="enqueuer"\} 1/);
    expect(dequeuerText).toMatch(/gw_publish_total\{kind="retry",outcome="confirmed",app="dequeuer"\} 1/);
    expect(dequeuerText).toMatch(/gw_dead_letters_total\{service="echo",reason="exhausted",app="dequeuer"\} 1/);
    expect(dequeuerText).toMatch(/gw_downstream_requests_total\{service="echo",outcome="server_error",app="dequeuer"\} [1-9]/);
    expect(dequeuerText).toMatch(/nodejs_eventloop_lag_p99_seconds\{app="dequeuer"\}/);
  });

  it('carries no ids or raw paths in any label value (bounded cardinality)', () => {
    for (const text of [enqueuerText, dequeuerText]) {
      const labels = text.split('\n').filter((l) => !l.startsWith('#') && l.includes('{')).map((l) => l.slice(l.indexOf('{'), l.lastIndexOf('}') + 1));
      expect(labels.length).toBeGreaterThan(50);
      expect(labels.filter((l) => UUID.test(l) || l.includes('/no/such') || l.includes('/status/') || l.includes('/delay/'))).toEqual([]);
    }
  });
});
