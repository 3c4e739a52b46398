import { describe, expect, it } from 'vitest';
import { BATCH_DEFAULTS, EventBatcher } from '../../shared/amqp/event-batcher.ts';
import { decodeEvents, type JobEvent } from '../../shared/events.ts';

/** A batcher whose publish records each batch that left, decoded, as `jobId:state` per transition. */
function recording(maxDelayMs: number): { batcher: EventBatcher; sent: string[][] } {
  const sent: string[][] = [];
  const batcher = new EventBatcher({
    maxDelayMs,
    publish: (body) => {
      sent.push(decodeEvents(body)!.events.map((e) => `${(e as JobEvent).jobId}:${e.state}`));
      return Promise.resolve();
    },
    onError: (err) => {
      throw err;
    },
  });
  return { batcher, sent };
}

const job = (jobId: string, state: JobEvent['state'], at = Date.now(), attempt = 1): JobEvent => ({ v: 1, kind: 'job', jobId, tenant: 't', service: 'echo', state, attempt, at });

describe('EventBatcher (pure)', () => {
  it('sends the transitions of one flush as one batch, in order, once its oldest waited maxDelayMs', async () => {
    const { batcher, sent } = recording(5);
    batcher.add(job('a', 'queued'));
    batcher.add(job('b', 'queued'));
    expect(sent).toHaveLength(0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent).toEqual([['a:queued', 'b:queued']]);
  });

  it('sends a batch at once when it holds maxEvents transitions (32 by default), without waiting for the timer', () => {
    const { batcher, sent } = recording(60_000);
    for (let i = 0; i < BATCH_DEFAULTS.maxEvents - 1; i++) batcher.add(job(`j${i}`, 'queued'));
    expect(sent).toHaveLength(0);
    batcher.add(job('last', 'queued'));
    expect(BATCH_DEFAULTS.maxEvents).toBe(32);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toHaveLength(32);
    expect(sent[0]!.at(-1)).toBe('last:queued');
    expect(batcher.pending).toBe(0);
  });

  it("folds a running transition into the same attempt's next one within a batch, and readers get both back in order", () => {
    const { batcher, sent } = recording(50);
    const t = Date.now();
    batcher.add(job('a', 'running', t));
    batcher.add(job('b', 'running', t));
    batcher.add(job('a', 'succeeded', t + 1));
    // Another attempt's transition is not folded into attempt 1's running.
    batcher.add(job('b', 'retrying', t + 1, 2));
    batcher.flush();
    expect(sent).toEqual([['b:running', 'a:running', 'a:succeeded', 'b:retrying']]);
  });
});

describe('the queued a dequeuer implies (pure)', () => {
  it("attempt 1's running carries queuedAt through the fold; readers get queued (implied), running, the final state, in order", () => {
    const sent: JobEvent[][] = [];
    const batcher = new EventBatcher({
      maxDelayMs: 50,
      publish: (body) => {
        sent.push(decodeEvents(body)!.events as JobEvent[]);
        return Promise.resolve();
      },
      onError: (err) => {
        throw err;
      },
    });
    const t = Date.now();
    batcher.add({ ...job('a', 'running', t), enqueuedAt: t - 7, queuedAt: t - 7 });
    batcher.add({ ...job('a', 'succeeded', t + 1), enqueuedAt: t - 7, result: { status: 200, headers: {}, bodyBase64: '', bodyTruncated: false } });
    batcher.add({ ...job('b', 'running', t), queuedAt: t - 3 });
    batcher.flush();
    const [events] = sent;
    expect(events!.map((e) => `${e.jobId}:${e.state}:${e.at - t}:${e.implied === true}`)).toEqual(['a:queued:-7:true', 'a:running:0:false', 'a:succeeded:1:false', 'b:queued:-3:true', 'b:running:0:false']);
    // The implied queued has none of the final state's fields; no expanded event keeps queuedAt or startedAt.
    expect(events![0]).not.toHaveProperty('result');
    for (const e of events!) {
      expect(e).not.toHaveProperty('queuedAt');
      expect(e).not.toHaveProperty('startedAt');
    }
  });

  it('only the decoder marks an event implied: a published `implied` is dropped', () => {
    const wire = { ...job('a', 'queued'), implied: true };
    expect(decodeEvents(Buffer.from(JSON.stringify(wire)))!.events[0]).not.toHaveProperty('implied');
    expect(decodeEvents(Buffer.from(JSON.stringify({ v: 2, kind: 'batch', events: [wire] })))!.events[0]).not.toHaveProperty('implied');
  });
});
