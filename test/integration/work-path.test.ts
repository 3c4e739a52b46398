import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeRequest, type RequestEnvelope } from '../../shared/envelope.ts';
import { decodeEvents, type JobEvent } from '../../shared/events.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { Stack } from '../support/stack.ts';

/** The dequeuer's job path driven straight through the broker (the enqueuer's async route is not involved). */
describe('dequeuer job path: retries through the delay levels and dead-lettering', () => {
  const url = brokerUrl();
  let stack: Stack;
  let conn: ChannelModel;
  let ch: ConfirmChannel;
  const events: JobEvent[] = [];

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('work path'),
      services: { echo: { url: '{DEMO}', retry: { maxAttempts: 4, baseMs: 100, capMs: 400 } } },
    });
    conn = await connect(url);
    ch = await conn.createConfirmChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, stack.topology.names.eventsExchange, 'job.#');
    await ch.consume(q.queue, (msg) => {
      for (const e of (msg && decodeEvents(msg.content)?.events) ?? []) if (e.kind === 'job') events.push(e);
    }, { noAck: true });
  });
  afterAll(async () => {
    await conn?.close();
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  async function publishJob(path: string): Promise<string> {
    const env: RequestEnvelope = {
      jobId: randomUUID(), requestId: randomUUID(), service: 'echo', mode: 'async', method: 'POST', path, query: '',
      headers: { 'content-type': 'text/plain' }, tenant: 'default', attempt: 1, enqueuedAt: Date.now(), body: Buffer.from('job'),
    };
    const n = stack.topology.names;
    ch.publish(n.workExchange, n.workRoutingKey('echo'), env.body, { ...encodeRequest(env), mandatory: true });
    await ch.waitForConfirms();
    return env.jobId;
  }

  async function until<T>(fn: () => T | undefined, timeoutMs = 15_000): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = fn();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  const statesOf = (jobId: string) => events.filter((e) => e.jobId === jobId).map((e) => `${e.state}:${e.attempt}`);

  it('runs a job that fails twice to success at attempt 3, with backoff gaps within the policy', async () => {
    const jobId = await publishJob('/fail-until/2');
    await until(() => events.find((e) => e.jobId === jobId && e.state === 'succeeded'));
    expect(statesOf(jobId)).toEqual(['queued:1', 'running:1', 'retrying:1', 'running:2', 'retrying:2', 'running:3', 'succeeded:3']);
    const calls = stack.demo.calls.filter((c) => c.idempotencyKey === jobId).map((c) => c.at);
    expect(calls).toHaveLength(3);
    // Gaps: full jitter in [0, 100] then [0, 200] ms, rounded up to the 100 ms delay unit, plus processing slack.
    expect(calls[1]! - calls[0]!).toBeLessThan(100 + 100 + 400);
    expect(calls[2]! - calls[1]!).toBeLessThan(200 + 100 + 400);
  });

  it('dead-letters a 400 after one attempt, with x-death reason rejected in the DLQ', async () => {
    const jobId = await publishJob('/status/400');
    await until(() => events.find((e) => e.jobId === jobId && e.state === 'failed'));
    expect(statesOf(jobId)).toEqual(['queued:1', 'running:1', 'failed:1']);
    const dlq = stack.topology.names.deadLetterQueue('echo');
    // The DLQ is a quorum queue with single active consumer: basic.get is refused, so consume one.
    const reader = await conn.createChannel();
    const got = await new Promise<ConsumeMessage>((resolve) => {
      void reader.consume(dlq, (m) => {
        if (m) {
          reader.ack(m);
          resolve(m);
        }
      });
    });
    await reader.close();
    expect(got.properties.messageId).toBe(jobId);
    const death = got.properties.headers?.['x-death']?.[0];
    expect(death?.reason).toBe('rejected');
    expect(death?.queue).toBe(stack.topology.names.workQueue('echo'));
  });

  it('dead-letters an always-failing job after max attempts and leaves nothing in work or delay queues', async () => {
    const jobId = await publishJob('/status/503');
    await until(() => events.find((e) => e.jobId === jobId && e.state === 'dead'));
    expect(statesOf(jobId).filter((s) => s.startsWith('running'))).toEqual(['running:1', 'running:2', 'running:3', 'running:4']);
    const n = stack.topology.names;
    const work = await ch.checkQueue(n.workQueue('echo'));
    expect(work.messageCount).toBe(0);
    for (let level = 0; level < 25; level++) expect((await ch.checkQueue(n.delayLevel(level))).messageCount).toBe(0);
    let deadCount = 0;
    for (let i = 0; i < 100 && deadCount === 0; i++) {
      deadCount = (await ch.checkQueue(n.deadLetterQueue('echo'))).messageCount;
      if (deadCount === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(deadCount).toBe(1);
  });
});
