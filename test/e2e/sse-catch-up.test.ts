import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashKey } from '../../enqueuer/security/api-keys.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { ascending, expectProgress, idKey, label, readSse, until, type SseEvent } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

const KEY_A = 'gwk_catchup-tenant-a-0123456789abcdefghij';
const KEY_B = 'gwk_catchup-tenant-b-0123456789abcdefghij';
const keys = { keys: [{ id: 'a-main', sha256: hashKey(KEY_A), tenant: 'a' }, { id: 'b-main', sha256: hashKey(KEY_B), tenant: 'b' }] };
const auth = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

/**
 * Issue 11 item 3, beyond the replica's replay log: a client whose `Last-Event-ID` is older than
 * what the replica holds in memory (EVENTS_REPLAY_MAX_BYTES, here the 64 KiB minimum) still gets
 * every later transition exactly once and in order, read from the events stream itself by a
 * short-lived catch-up consumer; `event: reset` only once the stream's retention (here 1 MiB)
 * dropped the id. Catch-ups are bounded per replica (503 with Retry-After above the bound).
 */
describe('SSE resume beyond the replay log, from the events stream', () => {
  const url = brokerUrl();
  let stack: Stack;

  beforeAll(async () => {
    const retention = { EVENTS_MAX_BYTES: String(1024 * 1024) };
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('sse catch-up'),
      startDequeuer: false,
      // The breaker stays closed: the 503s are the retries under test, not an outage.
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 6, baseMs: 200, capMs: 300 }, breaker: { volumeThreshold: 100_000 } } },
      enqueuerEnv: { API_KEYS_JSON: JSON.stringify(keys), EVENTS_REPLAY_MAX_BYTES: String(64 * 1024), EVENTS_CATCHUP_MAX: '2', ...retention },
      dequeuerEnv: retention,
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  const post = async (key: string, path: string, body = 'x'): Promise<string> => {
    const res = await fetch(`${stack.baseUrl}/v1/services/echo${path}`, { method: 'POST', body, headers: { ...auth(key), prefer: 'respond-async', 'content-type': 'text/plain' } });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const allSucceeded = async (tenant: string, ids: readonly string[]): Promise<true | undefined> => {
    for (const id of ids) if ((await stack.enqueuer.stores.jobs.get(tenant, id))?.state !== 'succeeded') return undefined;
    return true;
  };

  /** Reads a stream until `stopWhen` holds for what it has (then disconnects) or it ends. */
  async function read(path: string, key: string, stopWhen: (events: SseEvent[]) => boolean, headers: Record<string, string> = {}): Promise<SseEvent[]> {
    const ac = new AbortController();
    const seen: SseEvent[] = [];
    const r = await readSse(`${stack.baseUrl}${path}`, 60_000, (e) => {
      seen.push(e);
      if (stopWhen(seen)) ac.abort();
    }, ac.signal, { ...auth(key), ...headers });
    expect(r.status).toBe(200);
    return r.events;
  }
  const catchUps = async (outcome: string): Promise<number> => (await stack.enqueuer.metrics.sseCatchUps.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;

  let oldJobId = '';
  let oldJobEventId = '';
  let oldTenantEventId = '';

  it('tenant and job streams: an id older than the replay log gets every later transition exactly once, in order, and no other tenant\'s', async () => {
    const JOBS = 10;
    const ids: string[] = [];
    const finished = (events: SseEvent[]): boolean => ids.length === JOBS && ids.every((id) => events.some((e) => e.data.id === id && e.event === 'succeeded'));
    // Uninterrupted clients: the truth to compare with.
    const whole = read('/v1/events', KEY_A, finished);
    // Past the 10 queued (the dequeuer is stopped until the job streams are open too): mid-run.
    const firstPart = read('/v1/events', KEY_A, (seen) => seen.length === 15);
    await until(() => stack.enqueuer.hub.listeners >= 2 || undefined, 10_000);
    for (let i = 0; i < JOBS; i++) ids.push(await post(KEY_A, '/fail-until/2'));
    const [jobId] = ids as [string];
    const wholeJob = read(`/v1/jobs/${jobId}/events`, KEY_A, () => false);
    const jobFirstPart = read(`/v1/jobs/${jobId}/events`, KEY_A, (seen) => seen.some((e) => e.event === 'running'));
    await until(() => stack.enqueuer.hub.listeners >= 4 || undefined, 10_000);
    await stack.startDequeuer();
    const before = await firstPart;
    const jobBefore = await jobFirstPart;
    await until(() => allSucceeded('a', ids), 30_000);
    // Away while tenant B's jobs (40 KiB results each) push tenant A's transitions out of the 64 KiB log.
    const fillers: string[] = [];
    for (let i = 0; i < 6; i++) fillers.push(await post(KEY_B, '/echo', 'b'.repeat(40 * 1024)));
    await until(() => allSucceeded('b', fillers), 30_000);
    const lastBefore = before.at(-1)!.id!;
    const lastJobBefore = jobBefore.at(-1)!.id!;
    // The precondition: both ids are older than everything the replica still holds.
    expect(stack.enqueuer.events.log.firstOffset).toBeGreaterThan(Math.max(idKey(lastBefore)[0], idKey(lastJobBefore)[0]));
    const [doneBefore, endedBefore, gapBefore] = [await catchUps('done'), await catchUps('ended'), await catchUps('gap')];

    const after = await read('/v1/events', KEY_A, (seen) => finished([...before, ...seen]), { 'last-event-id': lastBefore });
    const resumed = [...before, ...after];
    expect(after.map((e) => e.event)).not.toContain('reset');
    expect(ascending(resumed)).toBe(true);
    expect(new Set(resumed.map(label)).size).toBe(resumed.length);
    expect(resumed.filter((e) => !ids.includes(String(e.data.id)))).toEqual([]);
    for (const id of ids) {
      expectProgress(resumed.filter((e) => e.data.id === id).map((e) => `${e.event}:${String(e.data.attempts)}`),
        ['queued:1', 'running:1', 'retrying:1', 'running:2', 'retrying:2', 'running:3', 'succeeded:3']);
    }
    const truth = await whole;
    expect(resumed.map((e) => [e.id, label(e)])).toEqual(truth.map((e) => [e.id, label(e)]));

    const jobAfter = await read(`/v1/jobs/${jobId}/events`, KEY_A, () => false, { 'last-event-id': lastJobBefore });
    const jobResumed = [...jobBefore, ...jobAfter];
    expect(ascending(jobAfter)).toBe(true);
    expect(new Set(jobResumed.map((e) => e.id)).size).toBe(jobResumed.length);
    expectProgress(jobResumed.map((e) => `${e.event}:${String(e.data.attempts)}`), ['queued:1', 'running:1', 'retrying:1', 'running:2', 'retrying:2', 'running:3', 'succeeded:3']);
    const jobTruth = await wholeJob;
    expect(jobAfter.map((e) => [e.id, e.event])).toEqual(jobTruth.slice(jobBefore.length).map((e) => [e.id, e.event]));
    expect(jobAfter.at(-1)!.event).toBe('succeeded');
    // Both read the stream (neither was served from the log nor reset). Each ends `done` (it reached
    // the live position and handed over) or `ended` (the client, or the job's final transition,
    // closed it first: this client disconnects as soon as it has every job's final state, which
    // can come before the catch-up has read the other tenant's messages up to the live position).
    expect((await catchUps('done')) - doneBefore + (await catchUps('ended')) - endedBefore).toBe(2);
    expect((await catchUps('gap')) - gapBefore).toBe(0);

    // Tenant B resuming from the same old id sees its own jobs only.
    const bAfter = await read('/v1/events', KEY_B, (seen) => fillers.every((id) => seen.some((e) => e.data.id === id && e.event === 'succeeded')), { 'last-event-id': lastBefore });
    expect(bAfter.length).toBeGreaterThan(0);
    expect(bAfter.filter((e) => !fillers.includes(String(e.data.id)))).toEqual([]);
    // Tenant B asking for tenant A's job: it does not exist for B.
    const other = await fetch(`${stack.baseUrl}/v1/jobs/${jobId}/events`, { headers: { ...auth(KEY_B), 'last-event-id': lastJobBefore } });
    expect(other.status).toBe(404);
    await other.body?.cancel();
    [oldJobId, oldJobEventId, oldTenantEventId] = [jobId, lastJobBefore, lastBefore];
  });

  it('job stream: a resume older than the log catches up from the stream, then hands over to the live feed for what is still to come', async () => {
    // Still running when the client comes back: its final transition arrives through the live feed.
    const jobId = await post(KEY_A, '/delay/5000');
    const whole = read(`/v1/jobs/${jobId}/events`, KEY_A, () => false);
    const before = await read(`/v1/jobs/${jobId}/events`, KEY_A, (seen) => seen.some((e) => e.event === 'running'));
    const fillers: string[] = [];
    for (let i = 0; i < 6; i++) fillers.push(await post(KEY_B, '/echo', 'c'.repeat(40 * 1024)));
    await until(() => allSucceeded('b', fillers), 30_000);
    const lastBefore = before.at(-1)!.id!;
    expect(stack.enqueuer.events.log.firstOffset).toBeGreaterThan(idKey(lastBefore)[0]);
    expect((await stack.enqueuer.stores.jobs.get('a', jobId))?.state).toBe('running');
    const doneBefore = await catchUps('done');
    const after = await read(`/v1/jobs/${jobId}/events`, KEY_A, () => false, { 'last-event-id': lastBefore });
    expect(after.map((e) => e.event)).toEqual(['succeeded']);
    const truth = await whole;
    expect([...before, ...after].map((e) => [e.id, e.event])).toEqual(truth.map((e) => [e.id, e.event]));
    expect(await catchUps('done') - doneBefore).toBe(1);
  });

  it('above EVENTS_CATCHUP_MAX a resume that needs the stream gets 503 GW_ERR_EVENTS_CATCHUP_BUSY with Retry-After', async () => {
    expect(oldTenantEventId).not.toBe('');
    // Both slots (EVENTS_CATCHUP_MAX=2) held, as by two long catch-ups.
    const held = [stack.enqueuer.events.catchUp.reserve(), stack.enqueuer.events.catchUp.reserve()];
    try {
      for (const path of ['/v1/events', `/v1/jobs/${oldJobId}/events`]) {
        const res = await fetch(`${stack.baseUrl}${path}`, { headers: { ...auth(KEY_A), accept: 'text/event-stream', 'last-event-id': oldTenantEventId } });
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('2');
        expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(await res.json()).toMatchObject({ code: 'GW_ERR_EVENTS_CATCHUP_BUSY', status: 503 });
      }
      // A fresh stream does not need a catch-up slot.
      const fresh = await fetch(`${stack.baseUrl}/v1/events`, { headers: { ...auth(KEY_A), accept: 'text/event-stream' } });
      expect(fresh.status).toBe(200);
      await fresh.body?.cancel();
    } finally {
      for (const free of held) free();
    }
    expect(stack.enqueuer.events.catchUp.active).toBe(0);
  });

  it('an id the stream no longer retains gets event: reset with the current state, then the live transitions', async () => {
    expect(oldJobEventId).not.toBe('');
    const oldOffset = idKey(oldTenantEventId)[0];
    // Retention (1 MiB, 1 MiB segments) drops whole segments: push ~50 KiB results until the first retained offset passes the old id.
    const conn = await connect(url);
    const firstRetained = async (): Promise<number> => {
      const ch = await conn.createChannel();
      await ch.prefetch(1);
      const offset = await new Promise<number>((resolve) => {
        void ch.consume(stack.topology.names.eventsStream, (msg) => {
          if (msg) resolve(msg.properties.headers!['x-stream-offset'] as number);
        }, { noAck: false, arguments: { 'x-stream-offset': 'first' } });
      });
      await ch.close();
      return offset;
    };
    try {
      for (let round = 0; round < 20 && (await firstRetained()) <= oldOffset; round++) {
        const batch: string[] = [];
        for (let i = 0; i < 10; i++) batch.push(await post(KEY_B, '/echo', 'r'.repeat(40 * 1024)));
        await until(() => allSucceeded('b', batch), 30_000);
      }
      expect(await firstRetained()).toBeGreaterThan(oldOffset);
    } finally {
      await conn.close();
    }
    const gapsBefore = await catchUps('gap');
    const job = await read(`/v1/jobs/${oldJobId}/events`, KEY_A, () => false, { 'last-event-id': oldJobEventId });
    expect(job.map((e) => e.event)).toEqual(['reset']);
    expect(job[0]!.data).toMatchObject({ id: oldJobId, state: 'succeeded' });
    // The tenant stream: reset first (id: the replica's position), then the live transitions.
    // The live job is submitted once the reset arrived: the subscription is then in place (a listener
    // count could still include the job stream's, closing). Tenant A has no other job in flight.
    let live: Promise<string> | undefined;
    const tenant = read('/v1/events', KEY_A, (seen) => {
      if (!live && seen[0]?.event === 'reset') live = post(KEY_A, '/echo');
      return seen.some((e) => e.event === 'succeeded');
    }, { 'last-event-id': oldTenantEventId });
    const events = await tenant;
    expect(live).toBeDefined();
    const liveId = await live!;
    expect(events[0]!.event).toBe('reset');
    expect(idKey(events[0]!.id)[0]).toBeGreaterThan(oldOffset);
    expect(events.slice(1).map((e) => `${String(e.data.id)}:${e.event}`)).toEqual([`${liveId}:queued`, `${liveId}:running`, `${liveId}:succeeded`]);
    expect(await catchUps('gap') - gapsBefore).toBe(2);
  });
});
