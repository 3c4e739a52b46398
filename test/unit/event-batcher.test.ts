import { describe, expect, it } from 'vitest';
import { EventBatcher } from '../../shared/amqp/event-batcher.ts';
import { decodeEvents, type JobEvent } from '../../shared/events.ts';

interface Sent {
  events: string[];
  waitedMs: number;
}

/** A batcher whose publish records what left and when its oldest event had waited. */
function recording(maxDelayMs: number): { batcher: EventBatcher; sent: Sent[] } {
  const sent: Sent[] = [];
  let waited = 0;
  const batcher = new EventBatcher({
    maxDelayMs,
    onFlush: (_events, _bytes, waitedMs) => {
      waited = waitedMs;
    },
    publish: (body) => {
      const decoded = decodeEvents(body)!;
      sent.push({ events: decoded.events.map((e) => `${(e as JobEvent).jobId}:${e.state}`), waitedMs: waited });
      return Promise.resolve();
    },
    onError: (err) => {
      throw err;
    },
  });
  return { batcher, sent };
}

const job = (jobId: string, state: JobEvent['state'], at = Date.now()): JobEvent => ({ v: 1, kind: 'job', jobId, tenant: 't', service: 'echo', state, attempt: 1, at });

/** Holds the event loop for `ms` (what a loaded process does between two timer phases). */
function busy(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) { /* the timer cannot fire meanwhile */ }
}

describe('EventBatcher (pure)', () => {
  it('sends the transitions of one flush as one batch, in order, once its oldest waited maxDelayMs', async () => {
    const { batcher, sent } = recording(5);
    batcher.add(job('a', 'queued'));
    batcher.add(job('b', 'queued'));
    expect(sent).toHaveLength(0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent.map((s) => s.events)).toEqual([['a:queued', 'b:queued']]);
  });

  it('on a busy event loop a batch leaves with the first transition added after its oldest waited maxDelayMs, not when the late timer fires', () => {
    const { batcher, sent } = recording(5);
    batcher.add(job('a', 'queued'));
    busy(25);
    batcher.add(job('b', 'queued'));
    // The timer has not run (the loop was never free); the age check sent both at once.
    expect(sent.map((s) => s.events)).toEqual([['a:queued', 'b:queued']]);
    expect(sent[0]!.waitedMs).toBeGreaterThanOrEqual(25);
    // A steady stream of transitions during one long turn: no batch waits much past 5 ms.
    const until = Date.now() + 60;
    let n = 0;
    while (Date.now() < until) {
      batcher.add(job(`c${n++}`, 'queued'));
      busy(1);
    }
    batcher.flush();
    const later = sent.slice(1);
    expect(later.length).toBeGreaterThanOrEqual(8);
    expect(later.flatMap((s) => s.events)).toEqual(Array.from({ length: n }, (_, i) => `c${i}:queued`));
    for (const s of later) expect(s.waitedMs).toBeLessThanOrEqual(5 + 2);
  });

  it('still folds a running transition into the same attempt\'s final one within a batch', () => {
    const { batcher, sent } = recording(50);
    const t = Date.now();
    batcher.add(job('a', 'running', t));
    batcher.add(job('a', 'succeeded', t + 1));
    batcher.flush();
    // decodeEvents expands the folded running back into its own transition, in order.
    expect(sent.map((s) => s.events)).toEqual([['a:running', 'a:succeeded']]);
  });
});
