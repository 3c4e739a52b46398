import { describe, expect, it } from 'vitest';
import { TenantSlots } from '../../dequeuer/fairness/tenant-slots.ts';
import { WorkScheduler } from '../../dequeuer/fairness/work-scheduler.ts';
import type { Disposition } from '../../dequeuer/queue-consumer.ts';
import { laneFor, serviceLanes } from '../../shared/topology/lanes.ts';
import type { Lane } from '../../shared/topology/names.ts';

/** A scheduler whose jobs finish when the test says so; records start order as `lane:tenant:n`. */
function harness(o: { limit: number; lanes?: number; normalMinShare?: number; caps?: Record<string, number>; defaultCap?: number }) {
  let now = 0;
  const slots = new TenantSlots({ defaultCap: o.defaultCap ?? 1000, caps: o.caps ?? {}, noisyFraction: 0.5, noisySustainMs: 1000, now: () => now });
  const limit = { value: o.limit };
  const scheduler = new WorkScheduler({ lanes: serviceLanes(o.lanes ?? 4), normalMinShare: o.normalMinShare ?? 0.1, slots, limit: () => limit.value, now: () => now });
  const started: string[] = [];
  const finishers: Array<() => void> = [];
  let n = 0;
  const submit = (lane: Lane, tenant: string): Promise<Disposition> => {
    const id = `${lane}:${tenant}:${n++}`;
    return scheduler.submit(lane, tenant, () => {
      started.push(id);
      return new Promise<Disposition>((resolve) => finishers.push(() => resolve('ack')));
    });
  };
  /** Finishes the oldest running job and lets its completion run. */
  const finishOne = async (): Promise<void> => {
    finishers.shift()?.();
    await new Promise((r) => setImmediate(r));
  };
  return { scheduler, slots, started, submit, finishOne, limit, setNow: (t: number) => (now = t) };
}

describe('laneFor: the lane of a job, pure', () => {
  it('is stable per tenant, spreads tenants over the lanes, and sends high priority to the high lane', () => {
    expect(laneFor('acme', undefined, 4)).toBe(laneFor('acme', 'normal', 4));
    expect(laneFor('acme', 'high', 4)).toBe('high');
    expect(laneFor('anyone', undefined, 1)).toBe(0);
    const hits = new Map<Lane, number>();
    for (let i = 0; i < 4000; i++) {
      const lane = laneFor(`tenant-${i}`, undefined, 4);
      hits.set(lane, (hits.get(lane) ?? 0) + 1);
    }
    expect([...hits.keys()].sort()).toEqual([0, 1, 2, 3]);
    for (const count of hits.values()) expect(count).toBeGreaterThan(800);
    expect(serviceLanes(3)).toEqual([0, 1, 2, 'high']);
  });
});

describe('WorkScheduler: which delivered job runs next', () => {
  it('serves the normal lanes round-robin: a burst in one lane does not hold back another', async () => {
    const h = harness({ limit: 2 });
    for (let i = 0; i < 50; i++) void h.submit(0, 'a');
    for (let i = 0; i < 3; i++) void h.submit(1, 'b');
    for (let i = 0; i < 6; i++) await h.finishOne();
    // a, a (limit 2 filled before b arrived), then alternating lanes while b has work.
    expect(h.started.slice(0, 8).map((s) => s.split(':')[1])).toEqual(['a', 'a', 'b', 'a', 'b', 'a', 'b', 'a']);
  });

  it('caps a tenant at its maxConcurrency and starts another tenant of the same lane instead', async () => {
    const h = harness({ limit: 10, caps: { a: 3 } });
    for (let i = 0; i < 20; i++) void h.submit(0, 'a');
    void h.submit(0, 'b');
    expect(h.slots.inflightOf('a')).toBe(3);
    expect(h.slots.inflightOf('b')).toBe(1);
    expect(h.scheduler.running).toBe(4);
    await h.finishOne();
    expect(h.slots.inflightOf('a')).toBe(3);
  });

  it('lends a lone tenant the idle slots beyond its default share, all but one, and gives the next free slot to another tenant', async () => {
    const h = harness({ limit: 10, defaultCap: 8, caps: { capped: 2 } });
    for (let i = 0; i < 30; i++) void h.submit(0, 'a');
    // Alone: its share (8) plus idle slots, one kept free.
    expect(h.slots.inflightOf('a')).toBe(9);
    // Another tenant's job starts at once in the slot kept free.
    void h.submit(1, 'b');
    expect(h.slots.inflightOf('b')).toBe(1);
    expect(h.scheduler.running).toBe(10);
    // While b's jobs wait, freed slots go to b (within its share), not to a borrowing.
    for (let i = 0; i < 5; i++) void h.submit(1, 'b');
    await h.finishOne();
    expect(h.slots.inflightOf('a')).toBe(8);
    expect(h.slots.inflightOf('b')).toBe(2);
    // A tenant with maxConcurrency never borrows.
    const c = harness({ limit: 10, defaultCap: 8, caps: { capped: 2 } });
    for (let i = 0; i < 10; i++) void c.submit(0, 'capped');
    expect(c.slots.inflightOf('capped')).toBe(2);
    expect(c.scheduler.running).toBe(2);
  });

  it('starts high-lane jobs before waiting normal ones, but keeps the normal minimum share', async () => {
    const h = harness({ limit: 1, normalMinShare: 0.25 });
    for (let i = 0; i < 20; i++) void h.submit(0, 'n');
    for (let i = 0; i < 9; i++) void h.submit('high', 'h');
    for (let i = 0; i < 14; i++) await h.finishOne();
    const order = h.started.map((s) => s.split(':')[0]);
    // First normal started before the high ones arrived; then 3 high : 1 normal while both wait.
    expect(order.slice(0, 14)).toEqual(['0', 'high', 'high', 'high', '0', 'high', 'high', 'high', '0', 'high', 'high', 'high', '0', '0']);
  });

  it('starts nothing while paused and resumes by itself at the pause end; the limit bounds running jobs', async () => {
    const h = harness({ limit: 3 });
    h.setNow(Date.now());
    h.scheduler.pauseUntil(Date.now() + 10_000);
    void h.submit(0, 'a');
    expect(h.started).toEqual([]);
    h.setNow(Date.now() + 10_001);
    h.scheduler.pump();
    expect(h.started).toHaveLength(1);
    for (let i = 0; i < 5; i++) void h.submit(1, 'b');
    expect(h.scheduler.running).toBe(3);
    h.limit.value = 0;
    await h.finishOne();
    expect(h.scheduler.running).toBe(2);
  });

  it('resumes after a pause even when its timer fires before the clock reaches the pause end', async () => {
    const h = harness({ limit: 3 });
    const t0 = Date.now();
    h.setNow(t0);
    h.scheduler.pauseUntil(t0 + 20);
    void h.submit(0, 'a');
    // The timer fires (~20 ms) while the clock still reads 1 ms before the end: nothing starts yet.
    h.setNow(t0 + 19);
    await new Promise((r) => setTimeout(r, 40));
    expect(h.started).toEqual([]);
    // No pump from outside: the re-armed timer starts the job once the clock is past the end.
    h.setNow(t0 + 21);
    await new Promise((r) => setTimeout(r, 40));
    expect(h.started).toHaveLength(1);
  });

  it('hands back every waiting job on release', async () => {
    const h = harness({ limit: 1 });
    void h.submit(0, 'a');
    const waiting = [h.submit(0, 'a'), h.submit('high', 'b')];
    expect(h.scheduler.releaseWaiting('requeue')).toBe(2);
    expect(await Promise.all(waiting)).toEqual(['requeue', 'requeue']);
    expect(h.scheduler.waiting).toBe(0);
  });
});

describe('TenantSlots: shares and the noisy-neighbour flag', () => {
  it('flags a tenant whose average share over the last window exceeds the fraction, dips included', () => {
    let now = 0;
    const slots = new TenantSlots({ defaultCap: 8, caps: {}, noisyFraction: 0.5, noisySustainMs: 1000, now: () => now });
    for (let i = 0; i < 7; i++) slots.start('a', 10);
    slots.start('b', 10);
    now = 500;
    expect(slots.shares(10).find((t) => t.tenant === 'a')).toMatchObject({ inflight: 7, share: 0.7, noisy: false });
    // A short dip to 2 in flight (a wave of calls ended) does not clear it: the window's average is 0.65.
    for (let i = 0; i < 5; i++) slots.finish('a', 10);
    now = 600;
    for (let i = 0; i < 5; i++) slots.start('a', 10);
    now = 1000;
    expect(slots.shares(10).find((t) => t.tenant === 'a')!.noisy).toBe(true);
    expect(slots.shares(10).find((t) => t.tenant === 'b')!.noisy).toBe(false);
    for (let i = 0; i < 4; i++) slots.finish('a', 10);
    now = 2000;
    expect(slots.shares(10).find((t) => t.tenant === 'a')).toMatchObject({ inflight: 3, noisy: false });
    expect(slots.canStart('a')).toBe(true);
    // Idle windows: the counts held still, so the flag follows them.
    now = 10_000;
    expect(slots.shares(4).find((t) => t.tenant === 'a')!.noisy).toBe(true);
  });
});
