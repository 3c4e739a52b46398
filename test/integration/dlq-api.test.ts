import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DeadLetter } from '../../enqueuer/http/views.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { JobDriver, until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

/** More than the rotation window (100), so both the early-ack and the deferred-ack paths run. */
const SENT = 150;

interface Page {
  items: DeadLetter[];
  total: number;
  next: string | null;
}

/** The DLQ API against the real broker: browse is a full rotation that leaves the DLQ as it was. */
describe('DLQ browse, replay and discard', () => {
  const url = brokerUrl();
  let stack: Stack;
  let jobs: JobDriver;
  let sent: string[] = [];

  const dlqCount = async (): Promise<number> => (await jobs.ch.checkQueue(stack.topology.names.deadLetterQueue('echo'))).messageCount;
  const browse = async (query = 'limit=500'): Promise<Page> => {
    const res = await fetch(`${stack.baseUrl}/v1/dlq/echo?${query}`);
    const body = (await res.json()) as Page;
    if (res.status !== 200) throw new Error(`browse answered ${res.status}: ${JSON.stringify(body)}`);
    return body;
  };
  const replay = async (body: unknown): Promise<{ status: number; body: { replayed: string[]; notFound: string[]; dryRun: boolean } }> => {
    const res = await fetch(`${stack.baseUrl}/v1/dlq/echo/replay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as never };
  };

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('dlq api'),
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 2, baseMs: 50, capMs: 100 }, breaker: { volumeThreshold: 100_000 } } },
    });
    jobs = await JobDriver.start(url, stack.topology);
    stack.demo.down = true;
    sent = await jobs.publishMany(Array.from({ length: SENT }, () => '/echo'));
    await until(() => sent.every((id) => jobs.final(id, 'dead')), 30_000, 'every job dead');
    await until(async () => (await dlqCount()) === SENT, 10_000, `${SENT} messages in the DLQ`);
  });
  afterAll(async () => {
    await jobs?.close();
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('browsing twice returns the same entries in the same order, leaves the DLQ message count unchanged and sends no rotated copy past the DLQ', async () => {
    // What an enqueuer's events queue hears from the dead-letter exchange: real deaths, never rotations.
    const listener = (await jobs.ch.assertQueue('', { exclusive: true })).queue;
    await jobs.ch.bindQueue(listener, stack.topology.names.deadLetterExchange, 'echo');
    const first = await browse();
    expect(await dlqCount()).toBe(SENT);
    const second = await browse();
    expect(await dlqCount()).toBe(SENT);
    expect(first.total).toBe(SENT);
    expect(new Set(first.items.map((e) => e.id))).toEqual(new Set(sent));
    expect(second.items).toEqual(first.items);
    // A rotated copy carries x-death as an ordinary header: still shown intact.
    for (const e of second.items) expect(e).toMatchObject({ reason: 'rejected', deaths: 1, attempts: 2, request: { method: 'POST', path: '/echo' } });
    // Cursor pages concatenate to the same listing.
    const paged: DeadLetter[] = [];
    let cursor: string | null = null;
    do {
      const page: Page = await browse(`limit=40${cursor ? `&cursor=${cursor}` : ''}`);
      paged.push(...page.items);
      cursor = page.next;
    } while (cursor);
    expect(paged.map((e) => e.id)).toEqual(first.items.map((e) => e.id));
    expect(await dlqCount()).toBe(SENT);
    expect((await jobs.ch.checkQueue(listener)).messageCount).toBe(0);
    await jobs.ch.deleteQueue(listener);
  });

  it('discards one entry (204, then 404) and keeps the order of the others', async () => {
    const before = (await browse()).items.map((e) => e.id);
    const victim = before[3]!;
    expect((await fetch(`${stack.baseUrl}/v1/dlq/echo/${victim}`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(`${stack.baseUrl}/v1/dlq/echo/${victim}`, { method: 'DELETE' })).status).toBe(404);
    expect((await browse()).items.map((e) => e.id)).toEqual(before.filter((id) => id !== victim));
    expect(await dlqCount()).toBe(SENT - 1);
    expect(stack.logs.lines.some((l) => l.audit === 'dlq.discard' && l.jobId === victim)).toBe(true);
  });

  it('validates the replay body and a dry run changes nothing', async () => {
    expect((await replay({ all: true, ids: ['x'] })).status).toBe(400);
    expect((await replay({})).status).toBe(400);
    expect((await fetch(`${stack.baseUrl}/v1/dlq/nope`)).status).toBe(404);
    const callsBefore = stack.demo.calls.length;
    const dry = await replay({ all: true, dryRun: true });
    expect(dry.status).toBe(200);
    expect(dry.body.replayed).toHaveLength(SENT - 1);
    expect(await dlqCount()).toBe(SENT - 1);
    expect(stack.demo.calls.length).toBe(callsBefore);
  });

  it('replay after the downstream is fixed: every replayed job succeeds, the DLQ ends empty, processed = sent, lost = 0', async () => {
    stack.demo.down = false;
    const listing = (await browse()).items.map((e) => e.id!);
    const some = [listing[0]!, listing[5]!, listing[10]!, 'no-such-job'];
    const partial = await replay({ ids: some });
    expect(partial.status).toBe(200);
    expect(partial.body.replayed).toEqual(some.slice(0, 3));
    expect(partial.body.notFound).toEqual(['no-such-job']);
    // Entries not selected stay, in their order.
    expect((await browse()).items.map((e) => e.id)).toEqual(listing.filter((id) => !some.includes(id)));

    const rest = await replay({ all: true, resetAttempts: true });
    expect(rest.status).toBe(200);
    expect(rest.body.replayed).toHaveLength(listing.length - 3);
    await until(() => listing.every((id) => jobs.final(id, 'succeeded')), 20_000, 'every replayed job succeeded');
    expect(await dlqCount()).toBe(0);
    // Replayed as they were, a job runs as its recorded attempt (2); with resetAttempts as attempt 1.
    for (const id of some.slice(0, 3)) expect(jobs.final(id, 'succeeded')!.attempt).toBe(2);
    for (const id of listing.filter((id) => !some.includes(id))) expect(jobs.final(id, 'succeeded')!.attempt).toBe(1);
    const succeeded = new Set(stack.demo.calls.filter((c) => c.status === 200).map((c) => c.idempotencyKey));
    const discarded = sent.filter((id) => !listing.includes(id));
    expect(discarded).toHaveLength(1);
    const processed = sent.filter((id) => succeeded.has(id)).length + discarded.length;
    expect(processed).toBe(SENT);
    expect(sent.filter((id) => !succeeded.has(id) && !discarded.includes(id))).toEqual([]);
  });
});
