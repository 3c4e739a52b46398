import { randomUUID } from 'node:crypto';
import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { breakerEventRoutingKey, encodeEvent, type BreakerEvent } from '../../shared/events.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { JobDriver } from '../support/jobs.ts';
import { readSse, until } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

interface JobBody {
  id: string;
  state: string;
  attempts: number;
  createdAt: string;
  result?: { status: number; bodyBase64: string; headers: Record<string, string> };
}

describe('async jobs: 202 after the confirm, status, list, SSE and Prefer wait', () => {
  const url = brokerUrl();
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('async jobs'),
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 4, baseMs: 100, capMs: 400 } } },
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  const post = (path: string, body: string, prefer = 'respond-async', headers: Record<string, string> = {}) =>
    fetch(`${stack.baseUrl}/v1/services/echo${path}`, { method: 'POST', body, headers: { 'content-type': 'text/plain', prefer, ...headers } });
  const getJob = async (id: string): Promise<JobBody> => (await (await fetch(`${stack.baseUrl}/v1/jobs/${id}`)).json()) as JobBody;

  async function listAll(limit: number): Promise<JobBody[]> {
    const all: JobBody[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const res = await fetch(`${stack.baseUrl}/v1/jobs?service=echo&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { items: JobBody[]; next: string | null };
      all.push(...body.items);
      if (!body.next) return all;
      cursor = body.next;
    }
    throw new Error('too many pages');
  }

  it('runs 1,000 async jobs to succeeded with readable results, and the list pages through each exactly once', async () => {
    const bodies = new Map<string, string>();
    const posted = Date.now();
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 50 }, async (_, i) => {
        const body = `job-${batch}-${i}-${Math.random()}`;
        const res = await post('/echo', body);
        expect(res.status).toBe(202);
        const job = (await res.json()) as JobBody;
        expect(res.headers.get('location')).toBe(`/v1/jobs/${job.id}`);
        expect(res.headers.get('preference-applied')).toBe('respond-async');
        expect(['queued', 'running', 'succeeded']).toContain(job.state);
        bodies.set(job.id, body);
      }));
    }
    const acceptMs = Date.now() - posted;
    expect(bodies.size).toBe(1000);
    const ids = new Set(bodies.keys());
    const done = await until(async () => {
      const jobs = (await listAll(100)).filter((j) => ids.has(j.id));
      return jobs.length === 1000 && jobs.every((j) => j.state === 'succeeded') ? jobs : undefined;
    }, 90_000, 250);
    expect(done).toHaveLength(1000);

    const paged = (await listAll(37)).filter((j) => ids.has(j.id));
    expect(paged).toHaveLength(1000);
    expect(new Set(paged.map((j) => j.id)).size).toBe(1000);
    for (let i = 1; i < paged.length; i++) expect(Date.parse(paged[i - 1]!.createdAt)).toBeGreaterThanOrEqual(Date.parse(paged[i]!.createdAt));

    const ok = await Promise.all([...bodies].map(async ([id, body]) => {
      const job = await getJob(id);
      return job.state === 'succeeded' && job.result?.status === 200 && Buffer.from(job.result.bodyBase64, 'base64').toString() === body;
    }));
    expect(ok.filter(Boolean)).toHaveLength(1000);
    const calls = stack.demo.callsByKey();
    expect([...ids].filter((id) => calls.get(id) === 1)).toHaveLength(1000);
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    expect(Number(/gw_publish_total\{kind="async",outcome="confirmed"[^}]*\} (\d+)/.exec(metrics)?.[1])).toBe(1000);
    expect(metrics).toMatch(/gw_jobs_accepted_total\{service="echo"[^}]*\} 1000\n/);
    console.log(`1,000 jobs accepted in ${acceptMs} ms (50 concurrent)`);
  });

  it('answers 404 for an unknown job id and 400 for a malformed list query', async () => {
    const res = await fetch(`${stack.baseUrl}/v1/jobs/00000000-0000-0000-0000-000000000000`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { code: string }).code).toBe('GW_ERR_JOB_NOT_FOUND');
    for (const q of ['state=nope', 'limit=0', 'limit=x', 'cursor=%%%', 'cursor=abc', 'service=Bad_Name']) {
      const bad = await fetch(`${stack.baseUrl}/v1/jobs?${q}`);
      expect(bad.status, q).toBe(400);
      expect(bad.headers.get('content-type')).toBe('application/problem+json');
    }
  });

  it('streams a job\'s transitions over SSE in order through to its final state, then closes', async () => {
    await stack.stopDequeuer();
    const res = await post('/fail-until/2', 'sse');
    expect(res.status).toBe(202);
    const { id: jobId } = (await res.json()) as JobBody;
    const streamed: Array<Awaited<ReturnType<typeof readSse>>> = [];
    const firstEvent = new Promise<void>((resolve) => {
      void readSse(`${stack.baseUrl}/v1/jobs/${jobId}/events`, 30_000, () => resolve()).then((r) => streamed.push(r));
    });
    await firstEvent;
    await stack.startDequeuer();
    const stream = await until(() => streamed[0], 30_000);
    expect(stream.status).toBe(200);
    expect(stream.contentType).toBe('text/event-stream');
    expect(stream.events.map((e) => `${e.event}:${e.data.attempts}`)).toEqual([
      'queued:1', 'running:1', 'retrying:1', 'running:2', 'retrying:2', 'running:3', 'succeeded:3',
    ]);
    const last = stream.events.at(-1)!.data as { result: { status: number } };
    expect(last.result.status).toBe(200);
  });

  it("a job whose enqueuer `queued` never reached the stream still streams queued, running, succeeded, and ends finished everywhere", async () => {
    // Published straight to the work queue: the enqueuer announces no `queued` for it, the extreme of
    // its `queued` reaching the stream after the dequeuer already ran the job (a quick downstream).
    const ac = new AbortController();
    const seen: Array<{ id: unknown; label: string }> = [];
    const listening = stack.enqueuer.hub.listeners;
    const tenantStream = readSse(`${stack.baseUrl}/v1/events`, 30_000, (e) => seen.push({ id: e.data.id, label: `${e.event}:${e.data.attempts}` }), ac.signal);
    await until(() => stack.enqueuer.hub.listeners > listening || undefined, 10_000);
    const driver = await JobDriver.start(url, stack.topology);
    let jobId: string;
    try {
      jobId = await driver.publish('/echo');
    } finally {
      await driver.close();
    }
    const mine = (): string[] => seen.filter((e) => e.id === jobId).map((e) => e.label);
    await until(() => mine().includes('succeeded:1') || undefined, 30_000);
    ac.abort();
    await tenantStream;
    expect(mine()).toEqual(['queued:1', 'running:1', 'succeeded:1']);
    await until(async () => (await getJob(jobId)).state === 'succeeded' || undefined, 10_000);
    // The job's own stream starts from the store: its final state only, then it closes.
    const own = await readSse(`${stack.baseUrl}/v1/jobs/${jobId}/events`, 10_000);
    expect(own.events.map((e) => e.event)).toEqual(['succeeded']);
    // The dashboard does not count it unfinished.
    expect(stack.enqueuer.workbench.activity.view('default', 'echo').active).toBe(0);
  });

  it('with Prefer: respond-async, wait=1 answers 200 with the result when the job finishes in time', async () => {
    const res = await post('/delay/200', 'quick', 'respond-async, wait=1');
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('quick');
    const jobId = res.headers.get('x-gw-job-id')!;
    expect(res.headers.get('content-location')).toBe(`/v1/jobs/${jobId}`);
    expect(stack.demo.callsByKey().get(jobId)).toBe(1);
  });

  it('with Prefer: respond-async, wait=1 answers 202 after about 1 s for a slow job, which later succeeds with one downstream call', async () => {
    const started = Date.now();
    const res = await post('/delay/3000', 'slow', 'respond-async, wait=1');
    const elapsedMs = Date.now() - started;
    expect(res.status).toBe(202);
    expect(elapsedMs).toBeGreaterThanOrEqual(950);
    expect(elapsedMs).toBeLessThan(2500);
    const { id: jobId, state } = (await res.json()) as JobBody;
    expect(state).toBe('running');
    const job = await until(async () => {
      const j = await getJob(jobId!);
      return j.state === 'succeeded' ? j : undefined;
    }, 15_000, 100);
    expect(Buffer.from(job.result!.bodyBase64, 'base64').toString()).toBe('slow');
    expect(stack.demo.callsByKey().get(jobId!)).toBe(1);
  });

  it('sheds sync requests with 503 and Retry-After while the breaker is open, yet still accepts async jobs', async () => {
    const conn = await connect(url);
    const ch = await conn.createConfirmChannel();
    const breaker = async (state: BreakerEvent['state'], retryAfterS: number): Promise<void> => {
      const e: BreakerEvent = { v: 1, kind: 'breaker', service: 'echo', state, retryAfterS, at: Date.now() };
      ch.publish(stack.topology.names.eventsExchange, breakerEventRoutingKey('echo'), encodeEvent(e), { messageId: randomUUID() });
      await ch.waitForConfirms();
    };
    try {
      await breaker('open', 5);
      await until(() => stack.enqueuer.breakers.stateOf('echo') === 'open' || undefined);
      const calls = stack.demo.calls.length;
      const shed = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x' });
      expect(shed.status).toBe(503);
      expect(((await shed.json()) as { code: string }).code).toBe('GW_ERR_BREAKER_OPEN');
      expect(Number(shed.headers.get('retry-after'))).toBeGreaterThanOrEqual(4);
      expect(Number(shed.headers.get('retry-after'))).toBeLessThanOrEqual(5);
      expect(stack.demo.calls.length).toBe(calls);
      expect((await post('/echo', 'queued while open')).status).toBe(202);
      await breaker('closed', 0);
      await until(() => stack.enqueuer.breakers.stateOf('echo') === 'closed' || undefined);
      expect((await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x' })).status).toBe(200);
    } finally {
      await conn.close();
    }
  });
});
