import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { BrokerConnection } from '../shared/amqp/broker-connection.ts';
import { GatewayError } from '../shared/errors.ts';
import { encodeEvent, jobEventRoutingKey, type JobEvent, eventIdSource } from '../shared/events.ts';
import type { Lifecycle, State } from '../shared/lifecycle.ts';
import { createRegistry } from '../shared/metrics.ts';
import { assertTopology } from '../shared/topology/assert.ts';
import { CapabilityProbe, isCapabilityError, type BrokerCapabilities } from '../shared/amqp/capabilities.ts';
import { buildTopology, type Topology } from '../shared/topology/topology.ts';
import type { Express } from 'express';
import { createApp } from './app.ts';
import type { EnqueuerConfig } from './config.ts';
import { BreakerBoard } from './events/breaker-board.ts';
import { EventsConsumer } from './events/events-consumer.ts';
import { JobEventHub } from './events/job-event-hub.ts';
import { MemoryIdempotencyStore, type IdempotencyStore } from './jobs/idempotency-store.ts';
import type { JobStore } from './jobs/job-store.ts';
import { MemoryJobStore } from './jobs/memory-job-store.ts';
import { RedisIdempotencyStore } from './jobs/redis-idempotency-store.ts';
import { RedisJobStore } from './jobs/redis-job-store.ts';
import { MemoryDelayedBacklog, RedisDelayedBacklog, type DelayedBacklog } from './jobs/delayed-backlog.ts';
import { createEnqueuerMetrics, initEnqueuerMetrics, type EnqueuerMetrics } from './metrics.ts';
import { DeadLetters } from './dlq.ts';
import { onCheckExpectation, onClientError, onConnectMethod } from './http/client-error.ts';
import { ReplyRouter } from './replies.ts';
import { DEV_PRINCIPAL, Guard } from './security/guard.ts';
import { RedisBucketStore } from './security/redis-bucket-store.ts';
import type { Readiness } from './routes/health.ts';

const nextEventId = eventIdSource();


/** The tenant of every request in development mode (`AUTH_MODE=none`); kept for code that imported it. */
export const DEFAULT_TENANT = DEV_PRINCIPAL.tenant;

export interface EnqueuerOptions {
  logger: Logger;
  registry?: Registry;
  /**
   * Called once when the broker cannot serve this gateway (`GW_ERR_BROKER_INCAPABLE`, e.g. no
   * quorum queues): the connection stops retrying; main.ts exits with the error.
   */
  onFatal?: (err: Error) => void;
}

/** The enqueuer process: owns the broker connection, the reply router and the HTTP server. */
export class Enqueuer implements Lifecycle {
  readonly config: EnqueuerConfig;
  readonly topology: Topology;
  readonly registry: Registry;
  readonly metrics: EnqueuerMetrics;
  readonly replies: ReplyRouter;
  readonly jobs: JobStore;
  readonly idempotency: IdempotencyStore;
  readonly delayed: DelayedBacklog;
  readonly hub = new JobEventHub();
  readonly breakers = new BreakerBoard();
  readonly events: EventsConsumer;
  #redis: Redis | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  /** DLQ browse/replay/discard, on connections of its own. */
  readonly deadLetters: DeadLetters;
  readonly guard: Guard;
  #logger: Logger;
  #broker: BrokerConnection;
  #probe: CapabilityProbe;
  #server: Server | undefined;
  #app: Express | undefined;

  /** The Express app (after start): its routes are listed by the contract test. */
  get app(): Express | undefined {
    return this.#app;
  }
  #state: State = 'idle';
  #inflight = 0;
  #idleWaiters: Array<() => void> = [];
  #stopping: Promise<void> | undefined;
  #listenerClosed = false;
  /** Responses not finished yet: told `Connection: close` when the drain starts. */
  #open = new Set<ServerResponse>();

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
      onPublish: (outcome, kind) => this.metrics.publishes.inc({ kind, outcome }),
      onLateReply: () => this.metrics.lateReplies.inc(),
      onConfirmTimeout: () => this.#broker.markSuspect(),
    });
    this.metrics = createEnqueuerMetrics(this.registry, {
      publishPending: () => this.replies.publishPending,
      correlationInflight: () => this.replies.inflight,
      // Only the in-memory stores hold bytes in this process (Redis bounds itself: maxmemory, TTLs).
      idempotencyBytes: () => (this.idempotency instanceof MemoryIdempotencyStore ? this.idempotency.bytes : 0),
      jobStoreBytes: () => (this.jobs instanceof MemoryJobStore ? this.jobs.bytes : 0),
      delayedJobs: { services: Object.keys(config.services), count: (service) => this.delayed.count(service) },
    });
    initEnqueuerMetrics(this.metrics, Object.keys(config.services));
    const security = config.security;
    this.guard = new Guard(security, {
      logger: options.logger.child({ component: 'guard' }),
      ...(security.redisUrl ? { store: new RedisBucketStore({ url: security.redisUrl, keyPrefix: `${config.prefix}:rl:`, logger: this.#logger }) } : {}),
      events: {
        onAuthFailure: (reason) => this.metrics.authFailures.inc({ reason }),
        onLimited: (reason) => this.metrics.limited.inc({ reason }),
      },
    });
    this.#probe = new CapabilityProbe({
      topology: this.topology,
      passive: config.topologyMode === 'passive',
      managementUrl: config.managementUrl,
      logger: this.#logger,
      gauge: this.metrics.brokerInfo,
    });
    this.#broker = new BrokerConnection({
      url: config.rabbitmqUrl,
      role: 'enqueuer',
      isFatal: isCapabilityError,
      heartbeatS: config.heartbeatS,
      writeBatching: config.writeBatching,
      logger: this.#logger,
      ...(config.tls ? { tls: config.tls } : {}),
      setup: async (connection) => {
        await this.#probe.run(connection);
        await assertTopology(connection, this.topology, { passive: config.topologyMode === 'passive' });
        await this.replies.attach(connection);
      },
    });
    const limits = { maxJobs: config.jobStoreMaxJobs, maxBytes: config.jobStoreMaxBytes, terminalTtlMs: config.jobTtlMs, activeTtlMs: config.jobActiveTtlMs, scanBudget: Math.max(500, 10 * config.jobsListMaxLimit) };
    if (config.redisUrl) {
      // Commands fail fast while Redis is away (typed 503) instead of queueing without bound.
      this.#redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectionName: 'gw-enqueuer' });
      this.#redis.on('error', (err: Error) => this.#logger.warn({ err: err.message }, 'redis connection error'));
      this.jobs = new RedisJobStore(this.#redis, config.redisKeyPrefix, limits);
      this.idempotency = new RedisIdempotencyStore(this.#redis, config.redisKeyPrefix);
      this.delayed = new RedisDelayedBacklog(this.#redis, config.redisKeyPrefix);
    } else {
      this.jobs = new MemoryJobStore(limits);
      this.delayed = new MemoryDelayedBacklog();
      this.idempotency = new MemoryIdempotencyStore({ maxKeys: config.idempotencyMaxKeys, maxBytes: config.idempotencyMaxBytes });
    }
    this.events = new EventsConsumer({
      url: config.rabbitmqUrl,
      heartbeatS: config.heartbeatS,
      writeBatching: config.writeBatching,
      ...(config.tls ? { tls: config.tls } : {}),
      logger: this.#logger,
      exchange: this.topology.names.eventsExchange,
      maxLength: config.eventsQueueMaxLength,
      onJob: (e) => this.#onJobEvent(e),
      deadLetters: {
        exchange: this.topology.names.deadLetterExchange,
        deliveryLimits: Object.fromEntries(Object.entries(config.services).map(([name, svc]) => [name, svc.work.deliveryLimit])),
      },
      onBreaker: (e) => this.breakers.apply(e),
      onInvalid: () => this.metrics.unhandledErrors.inc(),
    });
    this.deadLetters = new DeadLetters({
      url: config.rabbitmqUrl,
      heartbeatS: config.heartbeatS,
      writeBatching: config.writeBatching,
      ...(config.tls ? { tls: config.tls } : {}),
      topology: this.topology,
      // Children of the root logger: a child of the enqueuer's would write `component` twice.
      logger: options.logger.child({ component: 'dlq' }),
      opTimeoutMs: config.dlqOpTimeoutMs,
      maxScan: config.dlqMaxScan,
      maxWaiting: config.dlqMaxWaiting,
      maxWaitingPerTenant: config.dlqMaxWaitingPerTenant,
    });
    this.#wireBrokerEvents();
    this.#broker.on('fatal', (err: Error) => options.onFatal?.(err));
  }

  /** Waiters and streams hear the event at once; the store applies it in the background (monotonic). */
  #onJobEvent(e: JobEvent): void {
    this.hub.emit(e);
    this.jobs.apply(e).catch((err: unknown) => this.#logger.warn({ err, jobId: e.jobId, tenant: e.tenant, state: e.state }, 'job event not applied to the store'));
  }

  /** Publishes `queued` for the other replicas (each applies it; this one already has). */
  #announceQueued(e: JobEvent): void {
    this.replies
      .publish(this.topology.names.eventsExchange, jobEventRoutingKey(e), encodeEvent(e), { messageId: nextEventId(), contentType: 'application/json' }, 'event')
      .catch((err: unknown) => this.#logger.warn({ err, jobId: e.jobId, tenant: e.tenant }, 'queued event not published'));
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
  }

  readiness(): Readiness {
    const connected = this.#broker.state === 'connected';
    const checks: Record<string, boolean | string> = {
      state: this.#state,
      broker: connected ? true : (this.#broker.lastError ?? this.#broker.state),
      notBlocked: !this.#broker.blocked,
      responsive: !this.#broker.suspect,
      replyChannels: this.replies.openChannels > 0,
      // Not gating: jobs are still accepted safely, only their status view lags.
      events: this.events.connection.state === 'connected' ? true : (this.events.connection.lastError ?? this.events.connection.state),
    };
    return {
      ready: this.#state === 'running' && connected && !this.#broker.blocked && !this.#broker.suspect && this.replies.openChannels > 0,
      checks,
      ...(this.#probe.capabilities ? { broker: this.#probe.capabilities } : {}),
    };
  }

  /** The broker as probed on the first connection (undefined before). */
  get brokerCapabilities(): BrokerCapabilities | undefined {
    return this.#probe.capabilities;
  }

  #assertAccepting(): void {
    // Draining keeps serving until the listener closes: a load balancer still routes here until it
    // has seen /readyz fail.
    if (this.#state !== 'running' && !(this.#state === 'draining' && !this.#listenerClosed)) throw new GatewayError('GW_ERR_SHUTTING_DOWN', undefined, { retryAfterS: 1 });
    if (this.#broker.state !== 'connected') throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'not connected to the broker', { retryAfterS: 1 });
    if (this.#broker.blocked) throw new GatewayError('GW_ERR_BROKER_BLOCKED', undefined, { retryAfterS: 5 });
    if (this.#broker.suspect) throw new GatewayError('GW_ERR_BROKER_UNAVAILABLE', 'the broker connection is not responding', { retryAfterS: 1 });
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
      jobs: this.jobs,
      idempotency: this.idempotency,
      delayed: this.delayed,
      hub: this.hub,
      breakers: this.breakers,
      announceQueued: (e) => this.#announceQueued(e),
      recordEvent: (e) => {
        this.#onJobEvent(e);
        this.#announceQueued(e);
      },
      tenantOf: (req) => req.principal.tenant,
      guard: this.guard,
      assertAccepting: () => this.#assertAccepting(),
      track: (work) => this.#track(work),
      deadLetters: this.deadLetters,
    });
    this.#app = app;
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
    // While draining every response asks the client to close its keep-alive socket, so clients move
    // to another instance before the listener closes instead of meeting a closed socket.
    server.prependListener('request', (_req, res) => {
      if (this.#state === 'draining') {
        res.setHeader('connection', 'close');
        return;
      }
      this.#open.add(res);
      res.once('close', () => this.#open.delete(res));
    });
    server.on('clientError', onClientError);
    server.on('checkExpectation', onCheckExpectation);
    server.on('connect', onConnectMethod);
    this.#server = server;
    if (this.#redis) {
      await this.#redis.connect().catch((err: unknown) => this.#logger.error({ err }, 'redis not reachable at start-up; job requests answer 503 until it is'));
    }
    this.#sweeper = setInterval(() => {
      for (const store of [this.jobs, this.idempotency]) {
        store.sweep().catch((err: unknown) => this.#logger.warn({ err }, 'sweep failed'));
      }
    }, this.config.sweepIntervalMs).unref();
    this.events.start();
    if (this.config.security.authMode === 'none') {
      this.#logger.warn({ authMode: 'none', tenant: 'default' },
        'AUTH_MODE=none: DEVELOPMENT MODE, NO AUTHENTICATION. Every request is tenant "default". Configure API_KEYS_FILE before exposing this gateway.');
    }
    this.#broker.start();
    this.deadLetters.start();
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
  async waitUntilReady(timeoutMs = 30_000): Promise<void> {
    await Promise.all([this.#broker.waitUntilUp(timeoutMs), this.events.waitUntilUp(timeoutMs), this.deadLetters.waitUntilReady(timeoutMs)]);
  }

  /** Drain (readyz false, new requests 503, wait for in-flight up to the grace) then close. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /**
   * Drain in the order a load balancer can follow: `/readyz` false first while requests are still
   * served (with `Connection: close`) for `drainDelayMs`; then the listener closes, idle sockets
   * close, in-flight requests finish (up to the grace); then broker, stores and the rest close.
   */
  async #stop(): Promise<void> {
    this.#setState('draining');
    for (const res of this.#open) if (!res.headersSent) res.setHeader('connection', 'close');
    this.#open.clear();
    const server = this.#server;
    if (server && this.config.drainDelayMs > 0 && this.#state === 'draining') {
      this.#logger.info({ drainDelayMs: this.config.drainDelayMs }, 'not ready; still serving until the drain delay is over');
      await new Promise((resolve) => setTimeout(resolve, this.config.drainDelayMs));
    }
    this.#listenerClosed = true;
    server?.close();
    server?.closeIdleConnections();
    this.#logger.info({ inflight: this.#inflight }, 'listener closed; finishing in-flight requests');
    if (this.#inflight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, this.config.shutdownGraceMs).unref()),
      ]);
    }
    const errors: unknown[] = [];
    clearInterval(this.#sweeper);
    const redis = this.#redis;
    const steps = [
      () => this.deadLetters.close(),
      () => this.replies.close(),
      () => this.#broker.close(),
      () => this.events.close(),
      () => this.jobs.close(),
      () => this.idempotency.close(),
      () => this.guard.close(),
      async () => {
        if (redis && redis.status !== 'end') await redis.quit().then(() => undefined, () => redis.disconnect());
      },
    ];
    for (const step of steps) {
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
