import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { BrokerConnection } from '../shared/amqp/broker-connection.ts';
import { GatewayError } from '../shared/errors.ts';
import type { Lifecycle, State } from '../shared/lifecycle.ts';
import { createRegistry } from '../shared/metrics.ts';
import { assertTopology } from '../shared/topology/assert.ts';
import { buildTopology, type Topology } from '../shared/topology/topology.ts';
import { createApp } from './app.ts';
import type { EnqueuerConfig } from './config.ts';
import { createEnqueuerMetrics, type EnqueuerMetrics } from './metrics.ts';
import { onCheckExpectation, onClientError, onConnectMethod } from './http/client-error.ts';
import { ReplyRouter } from './replies.ts';
import { DEV_PRINCIPAL, Guard } from './security/guard.ts';
import { RedisBucketStore } from './security/redis-bucket-store.ts';
import type { Readiness } from './routes/health.ts';


/** The tenant of every request in development mode (`AUTH_MODE=none`); kept for code that imported it. */
export const DEFAULT_TENANT = DEV_PRINCIPAL.tenant;

export interface EnqueuerOptions {
  logger: Logger;
  registry?: Registry;
}

/** The enqueuer process: owns the broker connection, the reply router and the HTTP server. */
export class Enqueuer implements Lifecycle {
  readonly config: EnqueuerConfig;
  readonly topology: Topology;
  readonly registry: Registry;
  readonly metrics: EnqueuerMetrics;
  readonly replies: ReplyRouter;
  readonly guard: Guard;
  #logger: Logger;
  #broker: BrokerConnection;
  #server: Server | undefined;
  #state: State = 'idle';
  #inflight = 0;
  #idleWaiters: Array<() => void> = [];
  #stopping: Promise<void> | undefined;

  constructor(config: EnqueuerConfig, options: EnqueuerOptions) {
    this.config = config;
    this.#logger = options.logger.child({ component: 'enqueuer' });
    this.registry = options.registry ?? createRegistry({ app: 'enqueuer' });
    this.topology = buildTopology(config.services, { prefix: config.prefix, delayUnitMs: config.delayUnitMs });
    this.replies = new ReplyRouter({
      channels: config.replyChannels,
      publishTimeoutMs: config.publishTimeoutMs,
      publishWindow: config.publishWindow,
      isBlocked: () => this.#broker.blocked,
      logger: this.#logger,
      onPublish: (outcome) => this.metrics.publishes.inc({ kind: 'sync', outcome }),
      onLateReply: () => this.metrics.lateReplies.inc(),
    });
    this.metrics = createEnqueuerMetrics(this.registry, {
      publishPending: () => this.replies.publishPending,
      correlationInflight: () => this.replies.inflight,
    });
    const security = config.security;
    this.guard = new Guard(security, {
      logger: this.#logger.child({ component: 'guard' }),
      ...(security.redisUrl ? { store: new RedisBucketStore({ url: security.redisUrl, keyPrefix: `${config.prefix}:rl:`, logger: this.#logger }) } : {}),
      events: {
        onAuthFailure: (reason) => this.metrics.authFailures.inc({ reason }),
        onLimited: (reason) => this.metrics.limited.inc({ reason }),
      },
    });
    this.#broker = new BrokerConnection({
      url: config.rabbitmqUrl,
      role: 'enqueuer',
      heartbeatS: config.heartbeatS,
      logger: this.#logger,
      ...(config.tls ? { tls: config.tls } : {}),
      setup: async (connection) => {
        await assertTopology(connection, this.topology, { passive: config.topologyMode === 'passive' });
        await this.replies.attach(connection);
      },
    });
    this.#wireBrokerEvents();
  }

  get state(): State {
    return this.#state;
  }

  /** The bound HTTP port (useful with `port: 0`). */
  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? 0;
  }

  #wireBrokerEvents(): void {
    const role = 'enqueuer';
    this.#broker.on('up', () => this.metrics.brokerConnected.set({ role }, 1));
    this.#broker.on('down', () => {
      this.metrics.brokerConnected.set({ role }, 0);
      this.replies.detach();
    });
    this.#broker.on('reconnecting', () => this.metrics.brokerReconnects.inc({ role }));
    this.#broker.on('blocked', () => {
      this.metrics.brokerBlocked.set({ role }, 1);
      // RabbitMQ blocks a connection only once it publishes, and then stops reading it: the publish
      // that triggered the block would otherwise wait for the publish timeout.
      this.replies.failUnconfirmed(new GatewayError('GW_ERR_BROKER_BLOCKED', undefined, { retryAfterS: 5 }));
    });
    this.#broker.on('unblocked', () => this.metrics.brokerBlocked.set({ role }, 0));
    this.#broker.on('handler-error', () => this.metrics.unhandledErrors.inc());
    this.metrics.brokerConnected.set({ role }, 0);
    this.metrics.brokerBlocked.set({ role }, 0);
  }

  readiness(): Readiness {
    const connected = this.#broker.state === 'connected';
    const checks: Record<string, boolean | string> = {
      state: this.#state,
      broker: connected ? true : (this.#broker.lastError ?? this.#broker.state),
      notBlocked: !this.#broker.blocked,
      replyChannels: this.replies.openChannels > 0,
    };
    return { ready: this.#state === 'running' && connected && !this.#broker.blocked && this.replies.openChannels > 0, checks };
  }

  #assertAccepting(): void {
    if (this.#state !== 'running') throw new GatewayError('GW_ERR_SHUTTING_DOWN', undefined, { retryAfterS: 1 });
    if (this.#broker.state !== 'connected') throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'not connected to the broker', { retryAfterS: 1 });
    if (this.#broker.blocked) throw new GatewayError('GW_ERR_BROKER_BLOCKED', undefined, { retryAfterS: 5 });
  }

  #track<T>(work: Promise<T>): Promise<T> {
    this.#inflight++;
    return work.finally(() => {
      if (--this.#inflight === 0) for (const w of this.#idleWaiters.splice(0)) w();
    });
  }

  /** Connects (in the background: the HTTP server answers 503 until the broker is up) and listens. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new Error(`cannot start from state ${this.#state}`);
    this.#setState('starting');
    const app = createApp({
      config: this.config,
      topology: this.topology,
      replies: this.replies,
      metrics: this.metrics,
      registry: this.registry,
      logger: this.#logger,
      readiness: () => this.readiness(),
      tenantOf: (req) => req.principal.tenant,
      guard: this.guard,
      assertAccepting: () => this.#assertAccepting(),
      track: (work) => this.#track(work),
    });
    const limits = this.config.limits;
    const server = createServer({
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      // Node checks both timeouts only this often (30 s by default), which would stretch them.
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      keepAliveTimeout: 5_000,
      maxHeaderSize: limits.maxHeaderBytes,
      requireHostHeader: false,
    }, app);
    // One above the limit so inputLimits() sees an overflow instead of Node silently dropping fields.
    server.maxHeadersCount = limits.maxHeaderCount + 1;
    server.on('clientError', onClientError);
    server.on('checkExpectation', onCheckExpectation);
    server.on('connect', onConnectMethod);
    this.#server = server;
    if (this.config.security.authMode === 'none') {
      this.#logger.warn({ authMode: 'none', tenant: 'default' },
        'AUTH_MODE=none: DEVELOPMENT MODE, NO AUTHENTICATION. Every request is tenant "default". Configure API_KEYS_FILE before exposing this gateway.');
    }
    this.#broker.start();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#setState('running');
    this.#logger.info({ port: this.port }, 'enqueuer listening');
  }

  /** Resolves once connected to the broker with the topology in place. */
  waitUntilReady(timeoutMs = 30_000): Promise<void> {
    return this.#broker.waitUntilUp(timeoutMs);
  }

  /** Drain (readyz false, new requests 503, wait for in-flight up to the grace) then close. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#setState('draining');
    const server = this.#server;
    server?.close();
    server?.closeIdleConnections();
    if (this.#inflight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, this.config.shutdownGraceMs).unref()),
      ]);
    }
    const errors: unknown[] = [];
    for (const step of [() => this.replies.close(), () => this.#broker.close(), () => this.guard.close()]) {
      await step().catch((err: unknown) => errors.push(err));
    }
    server?.closeAllConnections();
    this.#setState(errors.length ? 'failed' : 'stopped');
    if (errors.length) throw new AggregateError(errors, 'enqueuer stop failed');
  }

  #setState(state: State): void {
    this.#state = state;
    this.#logger.info({ state }, 'enqueuer state changed');
  }
}
