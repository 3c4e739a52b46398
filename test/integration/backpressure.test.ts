import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePorts, startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { rssMb } from '../support/process-rss.ts';
import { Stack } from '../support/stack.ts';

interface Outcome {
  status: number;
  jobId: string | null;
  retryAfter: string | null;
  problemType?: string;
  ms: number;
}

async function post(base: string, body: string, headers: Record<string, string> = {}): Promise<Outcome> {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/services/echo/echo`, { method: 'POST', body, headers: { 'content-type': 'text/plain', ...headers } });
  const text = await res.text();
  const out: Outcome = { status: res.status, jobId: res.headers.get('x-gw-job-id'), retryAfter: res.headers.get('retry-after'), ms: performance.now() - t0 };
  if (res.headers.get('content-type') === 'application/problem+json') out.problemType = (JSON.parse(text) as { type: string }).type;
  return out;
}

describe('backpressure: a flood beyond the sync queue bound', () => {
  const url = brokerUrl();
  const BOUND = 20;
  const ROUNDS = 6;
  const PER_ROUND = 500;
  const HEAP_MB = 64;
  const RSS_BOUND_MB = 64;
  const RSS_ROUND_GROWTH_MB = 15;
  let stack: Stack;
  let child: ChildProcess | undefined;
  let base = '';

  beforeAll(async () => {
    const prefix = uniquePrefix('flood');
    const services = { echo: { url: '{DEMO}', rpc: { maxLength: BOUND } } };
    stack = await Stack.start({ url, prefix, services, startDequeuer: false });
    // The enqueuer under test runs in its own process so its RSS is measured alone, with the V8 heap
    // capped as in production (docs/security.md, "Backpressure"): uncapped, V8 grows the heap lazily and RSS
    // says nothing about what is retained.
    const [port] = await freePorts(1);
    base = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, 'enqueuer/main.ts'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, RABBITMQ_URL: url, GW_PREFIX: prefix, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', DRAIN_DELAY_MS: '0',
        SERVICES_JSON: JSON.stringify({ services }).replaceAll('{DEMO}', stack.demo.url) },
    });
    const until = Date.now() + 30_000;
    while (Date.now() < until && !(await fetch(`${base}/readyz`).then((r) => r.ok, () => false))) await sleep(100);
  });
  afterAll(async () => {
    if (child?.pid && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      await exited;
    }
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('answers the overflow 503 queue-full with Retry-After at once, processes every request it accepted, and keeps the enqueuer RSS bounded', async () => {
    for (let i = 0; i < 5; i++) await post(base, `warm-${i}`, { prefer: 'wait=1' });
    await sleep(1200);
    const calls0 = stack.demo.calls.length;
    const rssBefore = rssMb(child!.pid!);
    const outcomes: Outcome[] = [];
    const pending: Array<Promise<Outcome>> = [];
    const perRound: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const batch = Array.from({ length: PER_ROUND }, (_, i) => post(base, `flood-${round}-${i}`, { prefer: 'wait=30' }).then((o) => (outcomes.push(o), o)));
      pending.push(...batch);
      // Each round waits for its refusals: the broker rejects them while the dequeuer is stopped.
      const until = Date.now() + 30_000;
      while (outcomes.length < (round + 1) * PER_ROUND - BOUND && Date.now() < until) await sleep(20);
      perRound.push(rssMb(child!.pid!));
    }
    const rssPeak = rssMb(child!.pid!);
    expect(outcomes.length).toBe(ROUNDS * PER_ROUND - BOUND);
    await stack.startDequeuer();
    const results = await Promise.all(pending);
    const rssAfter = rssMb(child!.pid!);

    const rejected = results.filter((o) => o.status === 503);
    const ok = results.filter((o) => o.status === 200);
    expect(rejected).toHaveLength(ROUNDS * PER_ROUND - BOUND);
    expect(ok).toHaveLength(BOUND);
    for (const r of rejected) {
      expect(r.problemType).toBe('https://gateway.example/problems/queue-full');
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    // Every 2xx was processed exactly once downstream; no refused request ever reached it.
    const calls = stack.demo.callsByKey();
    for (const o of ok) expect(calls.get(o.jobId!)).toBe(1);
    for (const r of rejected) expect(calls.has(r.jobId!)).toBe(false);
    expect(stack.demo.calls.length - calls0).toBe(BOUND);
    console.log(`flood: ${ROUNDS * PER_ROUND} requests (${PER_ROUND} concurrent per round), rpc bound ${BOUND}: ${ok.length} x 200, ` +
      `${rejected.length} x 503 queue-full; slowest 503 ${Math.round(Math.max(...rejected.map((r) => r.ms)))} ms; ` +
      `enqueuer RSS ${rssBefore} -> rounds ${perRound.join(', ')} -> ${rssAfter} MiB (bound +${RSS_BOUND_MB})`);
    expect(rssPeak - rssBefore).toBeLessThan(RSS_BOUND_MB);
    expect(rssAfter - rssBefore).toBeLessThan(RSS_BOUND_MB);
    // Flat, not growing with the number of refused requests: the second half of the flood adds little.
    // A leak grows RSS on every round; V8 growing its heap toward the 64 MiB cap is one step of up to
    // ~20 MiB at some round (seen with and without write batching), so the largest single step is left
    // out of the sum: what remains is the growth the rounds sustain.
    const steps = perRound.slice(ROUNDS / 2 - 1).map((v, i, a) => (i === 0 ? 0 : v - a[i - 1]!));
    expect(steps.reduce((a, b) => a + b, 0) - Math.max(...steps)).toBeLessThan(RSS_ROUND_GROWTH_MB);
  });
});

describe('backpressure: a broker memory alarm (private node)', () => {
  let node: PrivateNode;
  let stack: Stack;

  beforeAll(async () => {
    node = await startPrivateNode();
    stack = await Stack.start({ url: node.url, prefix: 'gw', services: { echo: { url: '{DEMO}' } } });
  });
  afterAll(async () => {
    await stack?.stop(node.url).catch(() => undefined);
    await node?.destroy();
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('answers 503 within a second while the broker blocks publishers, reports not ready, and serves again once the alarm clears', async () => {
    expect((await post(stack.baseUrl, 'before')).status).toBe(200);
    await node.rabbitmqctl(['set_vm_memory_high_watermark', '0']);
    // The first publish after the alarm is what makes RabbitMQ block the connection.
    const first = await post(stack.baseUrl, 'during-1', { prefer: 'wait=1' });
    expect(first.status).toBe(503);
    expect(first.ms).toBeLessThan(1000);
    expect(first.problemType).toBe('https://gateway.example/problems/broker-blocked');
    expect(Number(first.retryAfter)).toBeGreaterThanOrEqual(1);
    const later = await Promise.all(Array.from({ length: 20 }, (_, i) => post(stack.baseUrl, `during-${i}`, { prefer: 'wait=1' })));
    expect(later.map((o) => o.status)).toEqual(later.map(() => 503));
    expect(Math.max(...later.map((o) => o.ms))).toBeLessThan(1000);
    const ready = await fetch(`${stack.baseUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: { notBlocked: boolean } }).checks.notBlocked).toBe(false);

    await node.rabbitmqctl(['set_vm_memory_high_watermark', '0.4']);
    const t0 = Date.now();
    while ((await fetch(`${stack.baseUrl}/readyz`)).status !== 200 && Date.now() - t0 < 10_000) await sleep(50);
    const recoveredMs = Date.now() - t0;
    const after = await post(stack.baseUrl, 'after');
    expect(after.status).toBe(200);
    console.log(`alarm: first request 503 in ${Math.round(first.ms)} ms, later ones max ${Math.round(Math.max(...later.map((o) => o.ms)))} ms; ready again ${recoveredMs} ms after the alarm cleared`);
    expect(recoveredMs).toBeLessThan(5000);
  });
});
