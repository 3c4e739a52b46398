import { describe, expect, it } from 'vitest';
import { EventBatcher } from '../../shared/amqp/event-batcher.ts';
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
