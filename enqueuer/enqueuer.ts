import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Express } from 'express';
import type { BrokerCapabilities } from '../shared/amqp/capabilities.ts';
import type { Lifecycle, State } from '../shared/lifecycle.ts';
import { createRegistry } from '../shared/metrics.ts';
import { buildTopology, type Topology } from '../shared/topology/topology.ts';
import { createApp } from './app.ts';
import { EnqueuerBroker } from './broker.ts';
import type { EnqueuerConfig } from './config.ts';
import { DeadLetters } from './dlq.ts';
import { BreakerBoard } from './events/breaker-board.ts';
import { EventStream } from './events/event-stream.ts';
import { MARKER_ROUTING_KEY, eventIdSource } from '../shared/events.ts';
import { JobEventHub } from './events/job-event-hub.ts';
import { JobEvents } from './events/job-events.ts';
import { HttpServer } from './http/server.ts';
import { Stores } from './jobs/stores.ts';
import { createEnqueuerMetrics, initEnqueuerMetrics, type EnqueuerMetrics } from './metrics.ts';
import type { ReplyRouter } from './replies.ts';
import type { Readiness } from './routes/health.ts';
import { DEV_PRINCIPAL, Guard } from './security/guard.ts';
import { RedisBucketStore } from './security/redis-bucket-store.ts';
import { Admission } from './submit/admission.ts';
import { Submitter } from './submit/submitter.ts';
import { Workbench } from './workbench/workbench.ts';

const nextMarkerId = eventIdSource();

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

/**
 * The enqueuer process: wires the parts (broker connections, stores, events, DLQ operations, the
 * submission layer, the HTTP app and server) and runs the lifecycle (start, readiness, drain, stop).
 * It does no request work itself (docs/adr/1301-submission-layer.md).
 */
export class Enqueuer implements Lifecycle {
  readonly config: EnqueuerConfig;
  readonly topology: Topology;
  readonly registry: Registry;
  readonly metrics: EnqueuerMetrics;
  /** Every AMQP connection, the reply router on the main one. */
  readonly broker: EnqueuerBroker;
  readonly stores: Stores;
  readonly hub = new JobEventHub();
  readonly breakers = new BreakerBoard();
  /** The events stream, read by offset (job view, breaker board, SSE replay). */
  readonly events: EventStream;
  readonly jobEvents: JobEvents;
  #markerTimer: NodeJS.Timeout | undefined;
  /** DLQ browse/replay/discard, on connections of its own. */
  readonly deadLetters: DeadLetters;
  readonly guard: Guard;
  readonly admission: Admission;
  readonly submitter: Submitter;
  /** Dashboard and DLQ workbench: audit trail, cancellations, timelines, activity, queue depths. */
  readonly workbench: Workbench;
  #logger: Logger;
  #http: HttpServer | undefined;
  #app: Express | undefined;
  #state: State = 'idle';
  #stopping: Promise<void> | undefined;

  constructor(config: EnqueuerConfig, options: EnqueuerOptions) {
    this.config = config;
    const logger = options.logger.child({ component: 'enqueuer' });
    this.#logger = logger;
    this.registry = options.registry ?? createRegistry({ app: 'enqueuer' });
    this.topology = buildTopology(config.services, { prefix: config.prefix, delayUnitMs: config.delayUnitMs, eventsMaxAge: config.eventsMaxAge, eventsMaxBytes: config.eventsMaxBytes });
    this.metrics = createEnqueuerMetrics(this.registry, {
      publishPending: () => this.replies.publishPending,
      correlationInflight: () => this.replies.inflight,
      idempotencyBytes: () => this.stores.memoryBytes.idempotency,
      jobStoreBytes: () => this.stores.memoryBytes.jobs,
      delayedJobs: { services: Object.keys(config.services), count: (service) => this.stores.delayed.count(service) },
    });
    initEnqueuerMetrics(this.metrics, Object.keys(config.services));
    this.broker = new EnqueuerBroker({
      settings: config,
      replies: { channels: config.replyChannels, publishTimeoutMs: config.publishTimeoutMs, publishWindow: config.publishWindow },
      topology: this.topology,
      metrics: this.metrics,
      logger,
      onFatal: options.onFatal,
    });
    const security = config.security;
    this.guard = new Guard(security, {
      logger: options.logger.child({ component: 'guard' }),
      ...(security.redisUrl ? { store: new RedisBucketStore({ url: security.redisUrl, keyPrefix: `${config.prefix}:rl:`, logger }) } : {}),
      events: {
        onAuthFailure: (reason) => this.metrics.authFailures.inc({ reason }),
        onLimited: (reason) => this.metrics.limited.inc({ reason }),
      },
    });
    this.stores = new Stores({ config, logger });
    this.jobEvents = new JobEvents({
      hub: this.hub, jobs: this.stores.jobs, replies: this.replies, eventsExchange: this.topology.names.eventsExchange, logger,
      onFlush: (events, _bytes, waitedMs) => {
        this.metrics.eventBatchSize.observe(events);
        this.metrics.eventBatchWait.observe(waitedMs / 1000);
      },
      observe: (e) => this.workbench.observe(e),
    });
    this.workbench = new Workbench({
      broker: this.broker,
      topology: this.topology,
      replies: this.replies,
      logger: options.logger.child({ component: 'workbench' }),
      redis: this.stores.redis ? { client: this.stores.redis, keyPrefix: config.redisKeyPrefix, ttlMs: Math.max(config.jobTtlMs, config.jobActiveTtlMs) } : undefined,
    });
    this.events = new EventStream({
      broker: this.broker,
      logger,
      stream: this.topology.names.eventsStream,
      store: this.stores.jobs,
      replayMaxBytes: config.eventsReplayMaxBytes,
      catchUpMax: config.eventsCatchUpMax,
      onCatchUp: (outcome, messages) => {
        this.metrics.sseCatchUps.inc({ outcome });
        this.metrics.sseCatchUpMessages.inc(messages);
      },
      onJob: (e, id) => this.jobEvents.received(e, id),
      onApplied: (offset, events, lagMs) => {
        this.metrics.eventsOffset.set(offset);
        this.metrics.eventsRead.inc(events);
        if (lagMs !== undefined) {
          this.metrics.eventsLag.set(Math.max(0, lagMs) / 1000);
          // Messages read while catching up are history, not how fast a transition shows.
          if (this.events.caughtUp) this.metrics.eventsVisibility.observe(Math.max(0, lagMs) / 1000);
        }
      },
      deadLetters: {
        exchange: this.topology.names.deadLetterExchange,
        deliveryLimits: Object.fromEntries(Object.entries(config.services).map(([name, svc]) => [name, svc.work.deliveryLimit])),
      },
      onBreaker: (e) => this.breakers.apply(e),
      onInvalid: () => this.metrics.unhandledErrors.inc(),
    });
    this.deadLetters = new DeadLetters({
      broker: this.broker,
      topology: this.topology,
      // Children of the root logger: a child of the enqueuer's would write `component` twice.
      logger: options.logger.child({ component: 'dlq' }),
      opTimeoutMs: config.dlqOpTimeoutMs,
      maxScan: config.dlqMaxScan,
      maxWaiting: config.dlqMaxWaiting,
      maxWaitingPerTenant: config.dlqMaxWaitingPerTenant,
    });
    this.broker.main.on('up', () => this.#publishMarker());
    this.admission = new Admission(this.broker);
    this.submitter = new Submitter({
      config,
      topology: this.topology,
      replies: this.replies,
      stores: this.stores,
      hub: this.hub,
      breakers: this.breakers,
      jobEvents: this.jobEvents,
      admission: this.admission,
      metrics: this.metrics,
      logger,
      onAccepted: (env, notBefore) => this.workbench.accepted(env, notBefore),
    });
  }

  /**
   * Publishes this replica's start marker until the stream reader reads it back: the marker sits at
   * the stream's tail of that moment, so reading it means the view holds everything before start.
   */
  #publishMarker(): void {
    if (this.events.caughtUp || this.#markerTimer || this.#state === 'stopped') return;
    this.replies
      .publish(this.topology.names.eventsExchange, MARKER_ROUTING_KEY, this.events.marker(), { messageId: nextMarkerId(), contentType: 'application/json' }, 'event')
      .then(() => this.events.whenCaughtUp(), (err: unknown) => {
        this.#logger.warn({ err }, 'events stream start marker not published; retrying');
        this.#markerTimer = setTimeout(() => {
          this.#markerTimer = undefined;
          this.#publishMarker();
        }, 1000).unref();
      })
      .catch(() => {});
  }

  /** The reply router of the main connection (publishes and sync request-reply). */
  get replies(): ReplyRouter {
    return this.broker.replies;
  }

  /** The Express app (after start): its routes are listed by the contract test. */
  get app(): Express | undefined {
    return this.#app;
  }

  get state(): State {
    return this.#state;
  }

  /** The bound HTTP port (useful with `port: 0`). */
  get port(): number {
    return this.#http?.port ?? 0;
  }

  readiness(): Readiness {
    const checks: Record<string, boolean | string> = {
      state: this.#state,
      ...this.broker.checks(),
      // Not gating: jobs are still accepted safely, only their status view lags.
      events: this.events.status(),
    };
    const capabilities = this.broker.capabilities;
    return {
      ready: this.#state === 'running' && this.broker.usable,
      checks,
      ...(capabilities ? { broker: capabilities } : {}),
    };
  }

  /** The broker as probed on the first connection (undefined before). */
  get brokerCapabilities(): BrokerCapabilities | undefined {
    return this.broker.capabilities;
  }

  /** Connects (in the background: the HTTP server answers 503 until the broker is up) and listens. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new Error(`cannot start from state ${this.#state}`);
    this.#setState('starting');
    const { config, guard } = this;
    const app = createApp({
      config,
      registry: this.registry,
      metrics: this.metrics,
      logger: this.#logger,
      readiness: () => this.readiness(),
      guard,
      services: { config, topology: this.topology, guard, submitter: this.submitter },
      jobs: { config, jobs: this.stores.jobs, hub: this.hub, replay: this.events, guard },
      dlq: { config, deadLetters: this.deadLetters, logger: this.#logger, metrics: this.metrics, jobEvents: this.jobEvents, guard, workbench: this.workbench },
      workbench: { config, deadLetters: this.deadLetters, jobs: this.stores.jobs, workbench: this.workbench, logger: this.#logger, metrics: this.metrics, jobEvents: this.jobEvents, guard },
      jobActions: { jobs: this.stores.jobs, delayed: this.stores.delayed, workbench: this.workbench, logger: this.#logger, jobEvents: this.jobEvents, guard },
      overview: { config, topology: this.topology, breakers: this.breakers, delayed: this.stores.delayed, workbench: this.workbench, guard },
    });
    this.#app = app;
    const http = new HttpServer(app, config.limits);
    this.#http = http;
    await this.stores.start();
    if (config.security.authMode === 'none') {
      this.#logger.warn({ authMode: 'none', tenant: 'default' },
        'AUTH_MODE=none: DEVELOPMENT MODE, NO AUTHENTICATION. Every request is tenant "default". Configure API_KEYS_FILE before exposing this gateway.');
    }
    this.broker.start();
    await http.listen(config.port, config.host);
    this.#setState('running');
    this.admission.open();
    this.#logger.info({ port: this.port }, 'enqueuer listening');
  }

  /** Resolves once connected to the broker with the topology in place (every connection up). */
  async waitUntilReady(timeoutMs = 30_000): Promise<void> {
    await this.broker.waitUntilUp(timeoutMs);
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
    const http = this.#http;
    http?.drain();
    if (http && this.config.drainDelayMs > 0) {
      this.#logger.info({ drainDelayMs: this.config.drainDelayMs }, 'not ready; still serving until the drain delay is over');
      await new Promise((resolve) => setTimeout(resolve, this.config.drainDelayMs));
    }
    this.admission.close();
    http?.closeListener();
    this.#logger.info({ inflight: this.admission.inflight }, 'listener closed; finishing in-flight requests');
    await this.admission.idle(this.config.shutdownGraceMs);
    const errors: unknown[] = [];
    clearTimeout(this.#markerTimer);
    const steps = [
      () => this.deadLetters.close(),
      () => this.jobEvents.close(),
      () => this.broker.close(),
      () => this.events.settle(),
      () => this.stores.close(),
      () => this.guard.close(),
    ];
    for (const step of steps) {
      await step().catch((err: unknown) => errors.push(err));
    }
    http?.closeAllConnections();
    this.#setState(errors.length ? 'failed' : 'stopped');
    if (errors.length) throw new AggregateError(errors, 'enqueuer stop failed');
  }

  #setState(state: State): void {
    this.#state = state;
    this.#logger.info({ state }, 'enqueuer state changed');
  }
}
