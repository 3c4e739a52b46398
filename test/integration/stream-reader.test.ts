import { connect } from 'amqplib';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { BrokerConnection } from '../../shared/amqp/broker-connection.ts';
import { ACK_IDLE_MS, StreamReader } from '../../shared/amqp/stream-reader.ts';
import { until } from '../support/sse.ts';

const CONSUMER_TIMEOUT_MS = 2000;

/**
 * The stream reader acknowledges in groups (`ackEvery`, `multiple`) to spare the broker a round per
 * message, and the rest after ACK_IDLE_MS. On a private node with a 2 s `consumer_timeout` (1 s
 * channel tick): a group larger than the prefetch must not stall the reader, and a few messages
 * left below a group must still be acknowledged, or the broker closes the channel with a 406.
 */
describe('stream reader acknowledgements', () => {
  let node: PrivateNode;
  const stream = 'reader-acks.events';

  beforeAll(async () => {
    node = await startPrivateNode({ config: { consumer_timeout: CONSUMER_TIMEOUT_MS }, advancedConfig: '[{rabbit, [{channel_tick_interval, 1000}]}].' });
  });
  afterAll(async () => {
    await node?.stop();
  });

  const publish = async (from: number, count: number): Promise<void> => {
    const conn = await connect(node.url);
    try {
      const ch = await conn.createConfirmChannel();
      await ch.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream' } });
      for (let i = from; i < from + count; i++) ch.sendToQueue(stream, Buffer.from(String(i)), { persistent: true });
      await ch.waitForConfirms();
    } finally {
      await conn.close();
    }
  };

  it('reads past its prefetch with acks in groups, acknowledges a partial group within the idle delay (no 406 after the consumer timeout), and never reconnects', async () => {
    await publish(0, 1);
    // Warnings of the reader and its connection (a 406 channel close, a lost connection) are collected.
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const got: number[] = [];
    const reader = new StreamReader({
      open: (setup) => new BrokerConnection({ url: node.url, role: 'reader-acks', logger, setup: (c) => setup(c) }),
      logger,
      stream,
      // A group of 50 asked for, the prefetch 20: the reader must ack before its credit runs out.
      prefetch: 20,
      ackEvery: 50,
      start: () => 'first',
      onMessage: (msg) => got.push(Number(msg.content.toString())),
    });
    reader.start();
    try {
      await reader.waitUntilUp(10_000);
      await publish(1, 204);
      await until(() => got.length === 205 || undefined, 10_000);
      expect(got).toEqual(Array.from({ length: 205 }, (_, i) => i));
      // 205 = 10 groups of 19 and 15 left: those are acknowledged after ACK_IDLE_MS, long before the timeout.
      await new Promise((resolve) => setTimeout(resolve, CONSUMER_TIMEOUT_MS + 2000 + ACK_IDLE_MS));
      await publish(205, 3);
      await until(() => got.length === 208 || undefined, 10_000);
      expect(got.slice(205)).toEqual([205, 206, 207]);
      expect(warnings).toEqual([]);
      expect(reader.connection.reconnects).toBe(0);
    } finally {
      await reader.close();
    }
  });
});
