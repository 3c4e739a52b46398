import type { ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import { BrokerConnection } from '../shared/amqp/broker-connection.ts';
import { brokerGate, isCapabilityError, type BrokerCapabilities, type CapabilityProbe } from '../shared/amqp/capabilities.ts';
import type { BrokerSettings } from '../shared/config/env.ts';
import { GatewayError } from '../shared/errors.ts';
import type { Topology } from '../shared/topology/topology.ts';
import type { EnqueuerMetrics } from './metrics.ts';
import { ReplyRouter } from './replies.ts';

export interface EnqueuerBrokerOptions {
  settings: Pick<BrokerSettings, 'rabbitmqUrl' | 'heartbeatS' | 'writeBatching' | 'tls' | 'topologyMode' | 'managementUrl'>;
  /** Reply channels and publish bounds of the main connection's {@link ReplyRouter}. */
  replies: { channels: number; publishTimeoutMs: number; publishWindow: number };
  topology: Topology;
  metrics: EnqueuerMetrics;
  logger: Logger;
  /** Called once when the broker cannot serve this gateway (`GW_ERR_BROKER_INCAPABLE`). */
  onFatal?: ((err: Error) => void) | undefined;
}

/** Where a part of the enqueuer gets its own connection (events consumer, DLQ operations). */
export interface ConnectionSource {
  open(role: string, options?: { setup?: (connection: ChannelModel) => Promise<void>; logger?: Logger }): BrokerConnection;
}

/**
 * Every AMQP connection of the enqueuer, in one object the parts receive. The main connection
 * (`enqueuer`) probes the broker's capabilities, asserts the topology and carries every publish
 * through the {@link ReplyRouter} (sync requests, async jobs, events); the parts open their own
 * connections here ({@link open}: R2, consuming never shares a connection with publishing), and
 * they start, report and close together.
 */
export class EnqueuerBroker implements ConnectionSource {
  readonly replies: ReplyRouter;
  readonly main: BrokerConnection;
  #probe: CapabilityProbe;
  #others: BrokerConnection[] = [];
  #common: { url: string; heartbeatS: number; writeBatching: boolean; logger: Logger; tls?: { ca?: Buffer[]; cert?: Buffer; key?: Buffer } };

  constructor(o: EnqueuerBrokerOptions) {
    const { settings, metrics, logger } = o;
    this.#common = { url: settings.rabbitmqUrl, heartbeatS: settings.heartbeatS, writeBatching: settings.writeBatching, logger, ...(settings.tls ? { tls: settings.tls } : {}) };
    // Counter children by (kind, outcome), resolved once: `inc({ kind, outcome })` hashes its labels per publish.
    const published = new Map<string, { inc(): void }>();
    this.replies = new ReplyRouter({
      ...o.replies,
      isBlocked: () => this.main.blocked,
      logger,
      onPublish: (outcome, kind) => {
        const key = `${kind} ${outcome}`;
        let child = published.get(key);
        if (!child) published.set(key, (child = metrics.publishes.labels({ kind, outcome })));
        child.inc();
      },
      onLateReply: () => metrics.lateReplies.inc(),
      onConfirmTimeout: () => this.main.markSuspect(),
    });
    const gate = brokerGate({ topology: o.topology, topologyMode: settings.topologyMode, managementUrl: settings.managementUrl, logger, gauge: metrics.brokerInfo });
    this.#probe = gate.probe;
    this.main = new BrokerConnection({
      ...this.#common,
      role: 'enqueuer',
      isFatal: isCapabilityError,
      setup: async (connection) => {
        await gate.check(connection);
        await this.replies.attach(connection);
      },
    });
    this.#wireEvents(metrics);
    this.main.on('fatal', (err: Error) => o.onFatal?.(err));
  }

  /**
   * A further connection with the main one's URL, heartbeat, TLS and write batching (its own set-up
   * and logger if given); started and closed with it.
   */
  open(role: string, options: { setup?: (connection: ChannelModel) => Promise<void>; logger?: Logger } = {}): BrokerConnection {
    const conn = new BrokerConnection({ ...this.#common, ...options, role });
    this.#others.push(conn);
    return conn;
  }

  #wireEvents(metrics: EnqueuerMetrics): void {
    const role = 'enqueuer';
    const main = this.main;
    main.on('up', () => metrics.brokerConnected.set({ role }, 1));
    main.on('down', () => {
      metrics.brokerConnected.set({ role }, 0);
      this.replies.detach();
    });
    main.on('reconnecting', () => metrics.brokerReconnects.inc({ role }));
    main.on('blocked', () => {
      metrics.brokerBlocked.set({ role }, 1);
      // RabbitMQ blocks a connection only once it publishes, and then stops reading it: the publish
      // that triggered the block would otherwise wait for the publish timeout.
      this.replies.failUnconfirmed(new GatewayError('GW_ERR_BROKER_BLOCKED', undefined, { retryAfterS: 5 }));
    });
    main.on('unblocked', () => metrics.brokerBlocked.set({ role }, 0));
    main.on('handler-error', () => metrics.unhandledErrors.inc());
  }

  /** The broker as probed on the first connection (undefined before). */
  get capabilities(): BrokerCapabilities | undefined {
    return this.#probe.capabilities;
  }

  /** The main connection can take a publish now: connected, not blocked, confirming, with reply channels. */
  get usable(): boolean {
    const main = this.main;
    return main.state === 'connected' && !main.blocked && !main.suspect && this.replies.openChannels > 0;
  }

  /** Throws the typed 503 that says why a publish cannot be taken now (reply channels aside). */
  assertUsable(): void {
    const main = this.main;
    if (main.state !== 'connected') throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'not connected to the broker', { retryAfterS: 1 });
    if (main.blocked) throw new GatewayError('GW_ERR_BROKER_BLOCKED', undefined, { retryAfterS: 5 });
    if (main.suspect) throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'the broker connection is not responding', { retryAfterS: 1 });
  }

  /** The main connection's part of `/readyz`. */
  checks(): Record<string, boolean | string> {
    const main = this.main;
    return {
      broker: main.state === 'connected' ? true : (main.lastError ?? main.state),
      notBlocked: !main.blocked,
      responsive: !main.suspect,
      replyChannels: this.replies.openChannels > 0,
    };
  }

  /**
   * Connects every connection in the background (a broker that is down is retried, never thrown).
   * The parts' connections start once the main one is first up: its set-up declares the topology
   * (the events and audit streams), so a first start on a fresh broker reads no missing stream.
   */
  start(): void {
    this.main.once('up', () => {
      for (const conn of this.#others) conn.start();
    });
    this.main.start();
  }

  /** Resolves once every connection is up (the main one with the topology in place). */
  async waitUntilUp(timeoutMs: number): Promise<void> {
    await Promise.all([this.main.waitUntilUp(timeoutMs), ...this.#others.map((c) => c.waitUntilUp(timeoutMs))]);
  }

  /** Closes the reply router, then every connection; the first failure is thrown after all were tried. */
  async close(): Promise<void> {
    const errors: unknown[] = [];
    for (const step of [() => this.replies.close(), () => this.main.close(), ...this.#others.map((c) => () => c.close())]) {
      await step().catch((err: unknown) => errors.push(err));
    }
    if (errors.length) throw errors.length === 1 ? errors[0] : new AggregateError(errors, 'broker close failed');
  }
}
