import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { encodeRequest, type RequestEnvelope } from '../../shared/envelope.ts';
import { decodeEvents, type JobEvent } from '../../shared/events.ts';
import { delayTarget } from '../../shared/topology/delay.ts';
import type { Topology } from '../../shared/topology/topology.ts';

/**
 * Drives async jobs straight through the broker (as the enqueuer's async route will) and records
 * the job events the dequeuer publishes on `<prefix>.events`.
 */
export class JobDriver {
  readonly events: JobEvent[] = [];
  readonly conn: ChannelModel;
  readonly ch: ConfirmChannel;
  readonly topology: Topology;

  private constructor(conn: ChannelModel, ch: ConfirmChannel, topology: Topology) {
    this.conn = conn;
    this.ch = ch;
    this.topology = topology;
  }

  static async start(url: string, topology: Topology): Promise<JobDriver> {
    const conn = await connect(url);
    const ch = await conn.createConfirmChannel();
    const driver = new JobDriver(conn, ch, topology);
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, topology.names.eventsExchange, 'job.#');
    await ch.consume(q.queue, (msg) => {
      for (const e of (msg && decodeEvents(msg.content)?.events) ?? []) if (e.kind === 'job') driver.events.push(e);
    }, { noAck: true });
    return driver;
  }

  envelope(path: string, o: { service?: string; tenant?: string } = {}): RequestEnvelope {
    return {
      jobId: randomUUID(), requestId: randomUUID(), service: o.service ?? 'echo', mode: 'async', method: 'POST', path, query: '',
      headers: { 'content-type': 'text/plain' }, tenant: o.tenant ?? 'default', attempt: 1, enqueuedAt: Date.now(), body: Buffer.from('job'),
    };
  }

  /** Publishes one job (with confirm), after `delayMs` through the delay levels when given. */
  async publish(path: string, o: { service?: string; tenant?: string; delayMs?: number } = {}): Promise<string> {
    const env = this.envelope(path, o);
    const target = delayTarget(this.topology, env.service, o.delayMs ?? 0);
    this.ch.publish(target.exchange, target.routingKey, env.body, { ...encodeRequest(env), mandatory: true });
    await this.ch.waitForConfirms();
    return env.jobId;
  }

  /** Publishes many jobs, confirmed together. */
  async publishMany(paths: readonly string[], o: { service?: string } = {}): Promise<string[]> {
    const ids: string[] = [];
    for (const path of paths) {
      const env = this.envelope(path, o);
      const n = this.topology.names;
      this.ch.publish(n.workExchange, n.workRoutingKey(env.service), env.body, { ...encodeRequest(env), mandatory: true });
      ids.push(env.jobId);
    }
    await this.ch.waitForConfirms();
    return ids;
  }

  statesOf(jobId: string): string[] {
    return this.events.filter((e) => e.jobId === jobId).map((e) => `${e.state}:${e.attempt}`);
  }

  final(jobId: string, state: JobEvent['state']): JobEvent | undefined {
    return this.events.find((e) => e.jobId === jobId && e.state === state);
  }

  async close(): Promise<void> {
    await this.conn.close().catch(() => {});
  }
}

/** Polls `fn` until it returns something other than undefined/false. */
export async function until<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
