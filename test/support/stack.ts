import { Writable } from 'node:stream';
import { afterAll, beforeAll } from 'vitest';
import { connect } from 'amqplib';
import { pino, type Logger } from 'pino';
import { DemoDownstream } from '../../demo/demo-downstream.ts';
import { Dequeuer } from '../../dequeuer/dequeuer.ts';
import { startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { loadDequeuerConfig, type DequeuerConfig } from '../../dequeuer/config.ts';
import { Enqueuer } from '../../enqueuer/enqueuer.ts';
import { loadEnqueuerConfig, type EnqueuerConfig } from '../../enqueuer/config.ts';
import type { Topology } from '../../shared/topology/topology.ts';

/** Captures pino JSON lines so tests can assert logs as parsed objects. */
export class LogSink {
  readonly lines: Array<Record<string, unknown>> = [];
  /** The lines as written (JSON.parse hides a key written twice; these do not). */
  readonly raw: string[] = [];
  readonly stream = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        this.raw.push(line);
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  logger(level = 'info'): Logger {
    return pino({ level }, this.stream);
  }
}

export interface StackOptions {
  url: string;
  prefix: string;
  /** Services JSON (services map); `{DEMO}` in a url is replaced with the demo's URL. */
  services?: Record<string, unknown>;
  enqueuerEnv?: Record<string, string>;
  dequeuerEnv?: Record<string, string>;
  /** Start the dequeuer now (default true). */
  startDequeuer?: boolean;
  logs?: LogSink;
}

/** Demo downstream + dequeuer + enqueuer in this process, on a private topology prefix. */
export class Stack {
  readonly demo: DemoDownstream;
  readonly enqueuer: Enqueuer;
  dequeuer: Dequeuer | undefined;
  readonly enqueuerConfig: EnqueuerConfig;
  readonly dequeuerConfig: DequeuerConfig;
  readonly logs: LogSink;

  private constructor(demo: DemoDownstream, enqueuerConfig: EnqueuerConfig, dequeuerConfig: DequeuerConfig, logs: LogSink) {
    this.demo = demo;
    this.enqueuerConfig = enqueuerConfig;
    this.dequeuerConfig = dequeuerConfig;
    this.logs = logs;
    this.enqueuer = new Enqueuer(enqueuerConfig, { logger: logs.logger() });
  }

  static async start(o: StackOptions): Promise<Stack> {
    const demo = await new DemoDownstream().listen();
    const services = JSON.stringify({ services: o.services ?? { echo: { url: '{DEMO}' } } }).replaceAll('{DEMO}', demo.url);
    const base = { RABBITMQ_URL: o.url, GW_PREFIX: o.prefix, SERVICES_JSON: services, PORT: '0', HOST: '127.0.0.1', HEARTBEAT_S: '5', DRAIN_DELAY_MS: '0' };
    const enqueuerConfig = loadEnqueuerConfig({ ...base, ...o.enqueuerEnv });
    const dequeuerConfig = loadDequeuerConfig({ ...base, SHUTDOWN_GRACE_MS: '2000', ...o.dequeuerEnv });
    const stack = new Stack(demo, enqueuerConfig, dequeuerConfig, o.logs ?? new LogSink());
    await stack.enqueuer.start();
    await stack.enqueuer.waitUntilReady(30_000);
    if (o.startDequeuer !== false) await stack.startDequeuer();
    return stack;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.enqueuer.port}`;
  }

  get topology(): Topology {
    return this.enqueuer.topology;
  }

  async startDequeuer(): Promise<Dequeuer> {
    if (this.dequeuer && this.dequeuer.state === 'running') return this.dequeuer;
    const dequeuer = new Dequeuer(this.dequeuerConfig, { logger: this.logs.logger() });
    await dequeuer.start();
    await dequeuer.waitUntilReady(30_000);
    this.dequeuer = dequeuer;
    return dequeuer;
  }

  async stopDequeuer(): Promise<void> {
    await this.dequeuer?.stop();
    this.dequeuer = undefined;
  }

  /** Stops everything and deletes the broker objects of this prefix. */
  async stop(url: string): Promise<void> {
    await this.dequeuer?.stop().catch(() => {});
    await this.enqueuer.stop().catch(() => {});
    await this.demo.close();
    await deleteTopology(url, this.topology);
  }
}

/** Deletes every queue and exchange of a topology (tests only). */
export async function deleteTopology(url: string, topology: Topology): Promise<void> {
  const conn = await connect(url).catch(() => undefined);
  if (!conn) return;
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    for (const q of topology.queues) await ch.deleteQueue(q.name).catch(() => {});
    for (const e of topology.exchanges) await ch.deleteExchange(e.name).catch(() => {});
    await ch.close().catch(() => {});
  } finally {
    await conn.close().catch(() => {});
  }
}

/**
 * Registers, for the enclosing `describe`, a private broker node (heartbeat 5 s) and a Stack on it
 * (prefix `gw`), so its tests may kill, stop or pause that broker; both are torn down after it.
 * Read `.node` and `.stack` inside the tests.
 */
export function stackOnPrivateNode(): { readonly node: PrivateNode; readonly stack: Stack } {
  const env = {} as { node: PrivateNode; stack: Stack };
  beforeAll(async () => {
    env.node = await startPrivateNode({ config: { heartbeat: 5 } });
    env.stack = await Stack.start({ url: env.node.url, prefix: 'gw' });
  });
  afterAll(async () => {
    await env.stack?.stop(env.node.url).catch(() => {});
    await env.node?.destroy();
  });
  return env;
}
