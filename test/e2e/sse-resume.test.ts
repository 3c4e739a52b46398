import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { ascending, expectProgress, label, readSse, until, type SseEvent } from '../support/sse.ts';
import { Stack } from '../support/stack.ts';

/**
 * Issue 11: SSE ids come from the events stream's offsets, and a client that reconnects with
 * `Last-Event-ID` gets every later transition exactly once and in order, including those that
 * happened while it was away. Ids older than the replica's replay log, and `event: reset`: sse-catch-up.test.ts.
 */
describe('SSE resume with Last-Event-ID', () => {
  const url = brokerUrl();
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('sse resume'),
      startDequeuer: false,
      // The breaker stays closed: the 503s are the retries under test, not an outage.
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 6, baseMs: 200, capMs: 300 }, breaker: { volumeThreshold: 100_000 } } },
      enqueuerEnv: { EVENTS_REPLAY_MAX_BYTES: String(64 * 1024) },
    });
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  const post = async (path: string, body = 'x'): Promise<string> => {
    const res = await fetch(`${stack.baseUrl}/v1/services/echo${path}`, { method: 'POST', body, headers: { prefer: 'respond-async', 'content-type': 'text/plain' } });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };

  /** Reads a stream until `stopWhen` holds for what it has (then disconnects) or it ends. */
  async function read(path: string, stopWhen: (events: SseEvent[]) => boolean, headers: Record<string, string> = {}): Promise<SseEvent[]> {
    const ac = new AbortController();
    const seen: SseEvent[] = [];
    const done = readSse(`${stack.baseUrl}${path}`, 60_000, (e) => {
      seen.push(e);
      if (stopWhen(seen)) ac.abort();
    }, ac.signal, headers);
    const r = await done;
    expect(r.status).toBe(200);
    return r.events;
  }

  it('one job: a client that disconnects mid-stream and reconnects gets every transition exactly once, in order', async () => {
    await stack.stopDequeuer();
    const jobId = await post('/fail-until/4');
    // An uninterrupted client: the truth to compare with.
    const whole = read(`/v1/jobs/${jobId}/events`, () => false);
    const firstPart = read(`/v1/jobs/${jobId}/events`, (seen) => seen.length === 3);
    await until(() => stack.enqueuer.hub.listeners >= 2 || undefined, 10_000);
    await stack.startDequeuer();
    const before = await firstPart;
    expect(before.map((e) => e.event)[0]).toBe('queued');
    // Away while the job runs its next attempts.
    await until(async () => ((await stack.enqueuer.stores.jobs.get('default', jobId))?.attempt ?? 0) >= 3 || undefined, 30_000);
    const after = await read(`/v1/jobs/${jobId}/events`, () => false, { 'last-event-id': before.at(-1)!.id! });
    const resumed = [...before, ...after];
    const expected = ['queued:1', 'running:1', 'retrying:1', 'running:2', 'retrying:2', 'running:3', 'retrying:3', 'running:4', 'retrying:4', 'running:5', 'succeeded:5'];
    expectProgress(resumed.map((e) => `${e.event}:${String(e.data.attempts)}`), expected);
    expect(ascending(after)).toBe(true);
    expect(new Set(resumed.map((e) => e.id)).size).toBe(resumed.length);
    const truth = await whole;
    expect(after.map((e) => [e.id, e.event])).toEqual(truth.slice(3).map((e) => [e.id, e.event]));
  });

  it('tenant stream: a client that reconnects gets every transition of every job after its id exactly once, in stream order', async () => {
    await stack.stopDequeuer();
    const JOBS = 20;
    const ids: string[] = [];
    const finished = (events: SseEvent[]): boolean => ids.length === JOBS && ids.every((id) => events.some((e) => e.data.id === id && e.event === 'succeeded'));
    const whole = read('/v1/events', finished);
    const firstPart = read('/v1/events', (seen) => seen.length === 30);
    await until(() => stack.enqueuer.hub.listeners >= 2 || undefined, 10_000);
    for (let i = 0; i < JOBS; i++) ids.push(await post('/fail-until/2'));
    await stack.startDequeuer();
    const before = await firstPart;
    await until(async () => {
      for (const id of ids) if ((await stack.enqueuer.stores.jobs.get('default', id))?.state !== 'succeeded') return undefined;
      return true;
    }, 30_000);
    const after = await read('/v1/events', (seen) => finished([...before, ...seen]), { 'last-event-id': before.at(-1)!.id! });
    const resumed = [...before, ...after];
    expect(ascending(resumed)).toBe(true);
    expect(new Set(resumed.map(label)).size).toBe(resumed.length);
    for (const id of ids) {
      expectProgress(resumed.filter((e) => e.data.id === id).map((e) => `${e.event}:${String(e.data.attempts)}`),
        ['queued:1', 'running:1', 'retrying:1', 'running:2', 'retrying:2', 'running:3', 'succeeded:3']);
    }
    const truth = await whole;
    expect(resumed.map((e) => [e.id, label(e)])).toEqual(truth.map((e) => [e.id, label(e)]));
  });
});
