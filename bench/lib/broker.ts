import { connect, type Channel } from 'amqplib';
import type { Topology } from '../../shared/topology/topology.ts';

/** Names of the raw baselines' own broker objects (under the run's prefix). */
export function rawNames(prefix: string): { rpcQueue: string; xrpcQueue: string; workQueue: string; dlx: string; dlq: string } {
  return { rpcQueue: `${prefix}.raw.rpc`, xrpcQueue: `${prefix}.raw.xrpc`, workQueue: `${prefix}.raw.work`, dlx: `${prefix}.raw.dlx`, dlq: `${prefix}.raw.dlq` };
}

async function withChannel<T>(url: string, work: (ch: Channel) => Promise<T>): Promise<T> {
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    return await work(ch);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/**
 * Declares the raw baselines' queues with the arguments the project uses: a classic rpc queue
 * bounded with reject-publish, and a quorum work queue bounded with reject-publish, at-least-once
 * dead-lettering and a delivery limit.
 */
export async function declareRawQueues(url: string, prefix: string, limits: { rpcMaxLength: number; workMaxLength: number; deliveryLimit: number }): Promise<void> {
  const n = rawNames(prefix);
  await withChannel(url, async (ch) => {
    await ch.assertExchange(n.dlx, 'direct', { durable: true });
    await ch.assertQueue(n.dlq, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch.bindQueue(n.dlq, n.dlx, 'raw');
    await ch.assertQueue(n.rpcQueue, { durable: true, arguments: { 'x-queue-type': 'classic', 'x-max-length': limits.rpcMaxLength, 'x-overflow': 'reject-publish' } });
    // The minimal Express pipeline's queue: a plain classic queue, as a hand-written pipeline declares it.
    await ch.assertQueue(n.xrpcQueue, { durable: false });
    await ch.assertQueue(n.workQueue, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-max-length': limits.workMaxLength,
        'x-overflow': 'reject-publish',
        'x-dead-letter-exchange': n.dlx,
        'x-dead-letter-routing-key': 'raw',
        'x-dead-letter-strategy': 'at-least-once',
        'x-delivery-limit': limits.deliveryLimit,
      },
    });
  });
}

/** Empties a queue (between runs, so every run starts from the same depth). */
export async function purgeQueue(url: string, queue: string): Promise<void> {
  await withChannel(url, async (ch) => {
    await ch.purgeQueue(queue);
  });
}

/**
 * A long-lived channel for polling a queue's depth while a run is measured: a connection per poll
 * (as {@link queueState} opens) costs the broker ~64 ms of CPU per second at 20 polls/s on this
 * machine (68 against 4 ms/s idle, measured), which a scenario would be charged for and its
 * baseline, counting in-process, is not.
 */
export async function queueProbe(url: string): Promise<{ state: (queue: string) => Promise<{ messages: number; consumers: number }>; close: () => Promise<void> }> {
  const conn = await connect(url);
  conn.on('error', () => undefined);
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  return { state: (queue) => depthOf(ch, queue), close: () => conn.close().catch(() => undefined) };
}

/** Ready messages and consumers of a queue. */
export async function queueState(url: string, queue: string): Promise<{ messages: number; consumers: number }> {
  return withChannel(url, (ch) => depthOf(ch, queue));
}

async function depthOf(ch: Channel, queue: string): Promise<{ messages: number; consumers: number }> {
  const q = await ch.checkQueue(queue);
  return { messages: q.messageCount, consumers: q.consumerCount };
}

/**
 * Deletes the bench's broker objects: the gateway topology of the run's prefix and the raw
 * baselines' queues. Each name must start with the prefix (a guard against shared objects).
 */
export async function deleteBenchObjects(url: string, prefix: string, topology: Topology): Promise<void> {
  const n = rawNames(prefix);
  const queues = [...topology.queues.map((q) => q.name), n.rpcQueue, n.xrpcQueue, n.workQueue, n.dlq];
  const exchanges = [...topology.exchanges.map((e) => e.name), n.dlx];
  const foreign = [...queues, ...exchanges].filter((name) => !name.startsWith(`${prefix}.`));
  if (foreign.length) throw new Error(`refusing to delete names outside prefix ${prefix}: ${foreign.join(', ')}`);
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    let ch: Channel | undefined;
    const run = async (op: (c: Channel) => Promise<unknown>): Promise<void> => {
      if (!ch) {
        ch = await conn.createChannel();
        ch.on('error', () => undefined);
      }
      // A failed delete closes the channel; the next one opens a fresh channel.
      await op(ch).catch(() => {
        ch = undefined;
      });
    };
    for (const q of queues) await run((c) => c.deleteQueue(q));
    for (const e of exchanges) await run((c) => c.deleteExchange(e));
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** The broker's product version, from the connection handshake. */
export async function brokerVersion(url: string): Promise<string> {
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    const p = conn.connection.serverProperties;
    return `${p.product ?? 'RabbitMQ'} ${p.version ?? 'unknown'}`;
  } finally {
    await conn.close().catch(() => undefined);
  }
}
