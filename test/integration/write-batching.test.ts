import type { Socket } from 'node:net';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchSocketWrites } from '../../shared/amqp/write-batching.ts';
import { brokerUrl, deleteByPrefix, uniquePrefix } from '../support/broker.ts';

/** Counts the socket's underlying writes: `_write` (one chunk) and `_writev` (a batch). */
function countWrites(model: ChannelModel): { writes: number; writevs: number; chunks: number } {
  const socket = (model as unknown as { connection: { stream: Socket } }).connection.stream as Socket & {
    _write: (...a: unknown[]) => void;
    _writev: (...a: unknown[]) => void;
  };
  const counts = { writes: 0, writevs: 0, chunks: 0 };
  const write = socket._write;
  const writev = socket._writev;
  socket._write = function (this: unknown, ...a: unknown[]) {
    counts.writes++;
    counts.chunks++;
    return write.apply(this, a);
  };
  socket._writev = function (this: unknown, ...a: unknown[]) {
    counts.writevs++;
    counts.chunks += (a[0] as unknown[]).length;
    return writev.apply(this, a);
  };
  return counts;
}

describe('write batching: a turn of AMQP frames leaves in one socket write', () => {
  const url = brokerUrl();
  const prefix = uniquePrefix('write batching');
  const queue = `${prefix}-q`;
  let batchedConn: ChannelModel;
  let plainConn: ChannelModel;

  beforeAll(async () => {
    batchedConn = await connect(url, { noDelay: true });
    plainConn = await connect(url, { noDelay: true });
    const ch = await plainConn.createChannel();
    await ch.assertQueue(queue, { durable: false, autoDelete: false, arguments: { 'x-queue-type': 'classic' } });
    await ch.close();
  });
  afterAll(async () => {
    await batchedConn?.close();
    await plainConn?.close();
    await deleteByPrefix(url, prefix, { queues: [queue] });
  });

  async function publishBurst(model: ChannelModel, n: number, tag: string): Promise<ReturnType<typeof countWrites>> {
    const ch = await model.createConfirmChannel();
    const counts = countWrites(model);
    for (let i = 0; i < n; i++) ch.sendToQueue(queue, Buffer.from(`${tag}-${i}`), { persistent: false });
    await ch.waitForConfirms();
    await ch.close();
    return counts;
  }

  it('sends a burst of 200 confirmed publishes in a few writev calls instead of 200 writes, and the broker receives all of them in order', async () => {
    expect(batchSocketWrites(batchedConn)).toBe(true);
    expect(batchSocketWrites(batchedConn)).toBe(true); // idempotent: no double wrapping

    const plain = await publishBurst(plainConn, 200, 'plain');
    const batched = await publishBurst(batchedConn, 200, 'batched');
    // Without batching, amqplib's Mux makes one socket write per frame batch (~200);
    // with it, the burst and its channel frames leave in a handful of writev calls.
    expect(plain.writes + plain.writevs).toBeGreaterThanOrEqual(150);
    expect(batched.writes + batched.writevs).toBeLessThanOrEqual(10);
    expect(batched.chunks).toBeGreaterThanOrEqual(200);

    const ch = await plainConn.createChannel();
    const bodies: string[] = [];
    for (;;) {
      const msg = await ch.get(queue, { noAck: true });
      if (!msg) break;
      bodies.push(msg.content.toString());
    }
    await ch.close();
    expect(bodies).toEqual([
      ...Array.from({ length: 200 }, (_, i) => `plain-${i}`),
      ...Array.from({ length: 200 }, (_, i) => `batched-${i}`),
    ]);
  });
});
