import type { Channel, ChannelModel } from 'amqplib';
import type { Topology } from './topology.ts';

/** A topology step failed on the broker (406 inequivalent arguments, 403 access refused, 404 missing in passive mode). */
export class TopologyError extends Error {
  readonly step: string;
  readonly replyCode: number | undefined;
  constructor(step: string, cause: unknown) {
    const e = cause as { code?: number; message?: string };
    super(`topology step "${step}" failed: ${e?.message ?? String(cause)}`, { cause });
    this.name = 'TopologyError';
    this.step = step;
    this.replyCode = typeof e?.code === 'number' ? e.code : undefined;
  }
}

export interface AssertOptions {
  /** Only check that everything exists (for a broker where the app user may not configure). */
  passive?: boolean;
}

/**
 * Applies the topology on a dedicated channel (a failed step closes the channel, so it must not be a
 * channel anything else uses). Idempotent: re-running it with the same topology is a no-op.
 */
export async function assertTopology(connection: ChannelModel, topology: Topology, options: AssertOptions = {}): Promise<void> {
  const channel = await connection.createChannel();
  // A failed declare closes the channel; the promise of that step carries the error, so the
  // channel's own 'error' event needs a listener only to keep it from crashing the process.
  channel.on('error', () => {});
  try {
    if (options.passive) await checkAll(channel, topology);
    else await declareAll(channel, topology);
  } finally {
    await channel.close().catch(() => {});
  }
}

async function step<T>(name: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (err) {
    throw new TopologyError(name, err);
  }
}

async function declareAll(channel: Channel, t: Topology): Promise<void> {
  for (const ex of t.exchanges) {
    await step(`exchange ${ex.name}`, () => channel.assertExchange(ex.name, ex.type, { durable: true, arguments: ex.arguments }));
  }
  for (const q of t.queues) {
    await step(`queue ${q.name}`, () => channel.assertQueue(q.name, { durable: true, arguments: q.arguments }));
  }
  for (const b of t.bindings) {
    const name = `binding ${b.source} -> ${b.destination} (${b.routingKey})`;
    if (b.destinationType === 'queue') await step(name, () => channel.bindQueue(b.destination, b.source, b.routingKey));
    else await step(name, () => channel.bindExchange(b.destination, b.source, b.routingKey));
  }
}

async function checkAll(channel: Channel, t: Topology): Promise<void> {
  for (const ex of t.exchanges) await step(`exchange ${ex.name}`, () => channel.checkExchange(ex.name));
  for (const q of t.queues) await step(`queue ${q.name}`, () => channel.checkQueue(q.name));
}
