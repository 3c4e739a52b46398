import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { BrokerConnection } from '../shared/amqp/broker-connection.ts';
import { ConfirmPublisher } from '../shared/amqp/confirm-publisher.ts';
import { GatewayError } from '../shared/errors.ts';
import { writeProblem } from '../shared/http-problem.ts';
import { encodeReply, HEADER, type ReplyEnvelope } from '../shared/envelope.ts';
import { BATCH_ROUTING_KEY, breakerEventRoutingKey, FIRST_AT_HEADER, encodeEvent, type BreakerEvent, eventIdSource } from '../shared/events.ts';
import { EventBatcher } from '../shared/amqp/event-batcher.ts';
import type { Lifecycle, State } from '../shared/lifecycle.ts';
import { createRegistry } from '../shared/metrics.ts';
import { brokerGate, type CapabilityProbe, isCapabilityError, type BrokerCapabilities } from '../shared/amqp/capabilities.ts';
import { buildTopology, type Topology } from '../shared/topology/topology.ts';
import type { DequeuerConfig } from './config.ts';
import { Downstream, type BreakerState } from './downstream.ts';
import { createDequeuerMetrics, initDequeuerMetrics, type DequeuerMetrics } from './metrics.ts';
import { TenantSlots } from './fairness/tenant-slots.ts';
import { WorkScheduler } from './fairness/work-scheduler.ts';
import { ServicePacing } from './pacing/service-pacing.ts';
import { QueueConsumer } from './queue-consumer.ts';
import { createRpcHandler } from './rpc-handler.ts';
import { createWorkHandler } from './work-handler.ts';
import { checkConsumerTimeouts, type ConsumerTimeoutFinding } from './consumer-timeout.ts';
import { StreamReader } from '../shared/amqp/stream-reader.ts';
import { CancellationSet, decodeCancellation } from '../shared/control/cancellation.ts';
import { oldestKey } from '../shared/oldest-key.ts';

const nextEventId = eventIdSource();

/** Direct reply-to addresses start with this (the pseudo-queue's name). */
const DIRECT_REPLY_PREFIX = 'amq.rabbitmq.reply-to';
/** Tries of one requester check whose checking channel another check's 404 closed. */
const REQUESTER_CHECK_TRIES = 10;
/** Gone reply-to addresses remembered (a few per enqueuer connection lost). */
const GONE_REQUESTERS_MAX = 1024;

/** The tenant a delivery belongs to, read before decoding (an undecodable one runs at once and is rejected). */
function tenantHeader(msg: ConsumeMessage): string {
  const t = msg.properties.headers?.[HEADER.tenant];
  return t === undefined ? '' : String(t);
}

const BREAKER_GAUGE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

export interface DequeuerOptions {
  logger: Logger;
  registry?: Registry;
  /**
   * Called once when the broker cannot serve this gateway (`GW_ERR_BROKER_INCAPABLE`, e.g. no
   * quorum queues) or a service can outlast its consumer timeout (`GW_ERR_CONSUMER_TIMEOUT_UNSAFE`):
   * the connection stops retrying; main.ts exits with the error.
   */
  onFatal?: (err: Error) => void;
}

/**
 * The dequeuer process. Two AMQP connections: one consumes, one publishes (replies, events, retry
 * copies), so a broker alarm that blocks publishers never stalls acks.
 */
export class Dequeuer implements Lifecycle {
  readonly config: DequeuerConfig;
  readonly topology: Topology;
  readonly registry: Registry;
  readonly metrics: DequeuerMetrics;
  readonly downstreams = new Map<string, Downstream>();
  #logger: Logger;
  #consumeConn: BrokerConnection;
  #publishConn: BrokerConnection;
  #probe: CapabilityProbe;
  #consumerTimeout: ConsumerTimeoutFinding[] | undefined;
  #replyChannel: Channel | undefined;
  #publisher: ConfirmPublisher | undefined;
  #consumers: QueueConsumer[] = [];
  /** Per service: which delivered job runs next (lanes, priority, tenant caps, adaptive limit). */
  readonly schedulers = new Map<string, WorkScheduler>();
  readonly pacing = new Map<string, ServicePacing>();
  #consumerMeta = new Map<QueueConsumer, { service: string; kind: 'rpc' | 'work' }>();
  #tenantSlots = new Map<string, { slots: TenantSlots; pacing: ServicePacing }>();
  #syncChain: Promise<void> = Promise.resolve();
  /** Job transitions on their way to the events stream, batched. */
  #outbox: EventBatcher;
  /** Requester checks in flight by reply-to address: concurrent requests of one channel share one. */
  #requesterChecks = new Map<string, Promise<boolean>>();
  /** Reply-to addresses found gone (one never comes back), newest last, at most GONE_REQUESTERS_MAX. */
  #goneRequesters = new Set<string>();
  #checkChannel: Promise<Channel> | undefined;
  #server: Server | undefined;
  #state: State = 'idle';
  #stopping: Promise<void> | undefined;
  /** Cancelled jobs, from the cancellation stream read from its start (docs/adr/1600-dashboard-dlq-workbench-cancel.md). */
  readonly cancellations = new CancellationSet();
  #cancellationReader: StreamReader;

  constructor(config: DequeuerConfig, options: DequeuerOptions) {
    this.config = config;
    this.#logger = options.logger.child({ component: 'dequeuer' });
    this.registry = options.registry ?? createRegistry({ app: 'dequeuer' });
    this.metrics = createDequeuerMetrics(this.registry);
    initDequeuerMetrics(this.metrics, config.consume);
    this.metrics.tenantShares.source = () => this.#tenantShares();
    this.topology = buildTopology(config.services, { prefix: config.prefix, delayUnitMs: config.delayUnitMs, eventsMaxAge: config.eventsMaxAge, eventsMaxBytes: config.eventsMaxBytes });
    this.#outbox = new EventBatcher({
      publish: (body, _events, firstAt) => {
        const publisher = this.#publisher;
        if (!publisher) return Promise.reject(new Error('publish connection down'));
        return publisher.publish(this.topology.names.eventsExchange, BATCH_ROUTING_KEY, body, { messageId: nextEventId(), contentType: 'application/json', headers: { [FIRST_AT_HEADER]: firstAt } }, 'event');
      },
      onFlush: (events, _bytes, waitedMs) => {
        this.metrics.eventBatchSize.observe(events);
        this.metrics.eventBatchWait.observe(waitedMs / 1000);
      },
      onError: (err, events) => this.#logger.warn({ err, events }, 'job events not published to the events stream'),
    });
    const common = { url: config.rabbitmqUrl, heartbeatS: config.heartbeatS, writeBatching: config.writeBatching, logger: this.#logger, ...(config.tls ? { tls: config.tls } : {}) };

    for (const service of config.consume) {
      const downstream = new Downstream(service, config.services[service]!, {
        onBreakerState: (svc, state, retryAfterS) => this.#onBreakerState(svc, state, retryAfterS),
      });
      this.downstreams.set(service, downstream);
      const logger = this.#logger.child({ service });
      const rpc = new QueueConsumer({
          startPaused: true,
          queue: this.topology.names.rpcQueue(service),
          prefetch: config.services[service]!.rpc.prefetch,
          logger,
          onHandlerError: (err) => this.#onHandlerError(err),
          handler: createRpcHandler({
            downstream, metrics: this.metrics, logger, queue: this.topology.names.rpcQueue(service),
            reply: (to, id, reply) => this.#sendReply(to, id, reply),
            ...(config.checkRequester ? { requesterAlive: (to: string) => this.#requesterAlive(to) } : {}),
          }),
        });
      this.#consumers.push(rpc);
      this.#consumerMeta.set(rpc, { service, kind: 'rpc' });
      this.#addWorkConsumers(service, downstream, logger);
    }

    this.#cancellationReader = new StreamReader({
      open: (setup) => new BrokerConnection({ ...common, role: 'dequeuer-cancellations', setup }),
      logger: this.#logger,
      stream: this.topology.names.cancellationStream,
      // Every cancellation the stream still keeps (retention outlives the longest delay).
      start: () => 'first',
      onMessage: (msg) => {
        const c = decodeCancellation(msg.content);
        if (c) this.cancellations.add(c);
      },
    });
    this.#publishConn = new BrokerConnection({
      ...common,
      role: 'dequeuer-publish',
      setup: async (connection) => {
        const confirm = await connection.createConfirmChannel();
        confirm.on('error', (err: Error) => this.#logger.warn({ err }, 'publish channel error'));
        this.#publisher = new ConfirmPublisher(confirm, {
          timeoutMs: config.publishTimeoutMs,
          isBlocked: () => this.#publishConn.blocked,
          onOutcome: (outcome, kind) => this.metrics.publishes.inc({ kind, outcome }),
        });
        confirm.on('close', () => {
          if (this.#publisher?.channel === confirm) this.#publisher = undefined;
        });
        const channel = await connection.createChannel();
        channel.on('error', (err: Error) => this.#logger.warn({ err }, 'reply channel error'));
        channel.on('close', () => {
          if (this.#replyChannel === channel) this.#replyChannel = undefined;
        });
        this.#replyChannel = channel;
      },
    });
    const gate = brokerGate({ topology: this.topology, topologyMode: config.topologyMode, managementUrl: config.managementUrl, logger: this.#logger, gauge: this.metrics.brokerInfo });
    this.#probe = gate.probe;
    this.#consumeConn = new BrokerConnection({
      ...common,
      role: 'dequeuer-consume',
      isFatal: isCapabilityError,
      setup: async (connection) => {
        await gate.check(connection);
        await this.#checkConsumerTimeout();
        // Consumers attach paused: nothing is pulled while replies, events and retry copies
        // could not be published (that would answer nobody and lose retries).
        for (const c of this.#consumers) await c.attach(connection);
        this.#syncConsumption();
      },
    });
    for (const conn of [this.#publishConn, this.#consumeConn]) {
      const role = conn.role;
      conn.on('up', () => this.metrics.brokerConnected.set({ role }, 1));
      conn.on('down', () => this.metrics.brokerConnected.set({ role }, 0));
      conn.on('reconnecting', () => this.metrics.brokerReconnects.inc({ role }));
      conn.on('blocked', () => this.metrics.brokerBlocked.set({ role }, 1));
      conn.on('unblocked', () => this.metrics.brokerBlocked.set({ role }, 0));
      conn.on('handler-error', (err: unknown) => this.#onHandlerError(err));
      conn.on('fatal', (err: Error) => options.onFatal?.(err));
    }
    this.#consumeConn.on('down', () => {
      for (const c of this.#consumers) c.detach();
    });
    this.#publishConn.on('up', () => this.#syncConsumption());
    this.#publishConn.on('down', () => this.#syncConsumption());
  }

  get state(): State {
    return this.#state;
  }

  /**
   * One consumer per work lane, each with the service's prefetch, all handing their deliveries to
   * the service's scheduler (docs/adr/1700-fair-lanes-priority-pacing.md).
   */
  #addWorkConsumers(service: string, downstream: Downstream, logger: Logger): void {
    const cfg = this.config.services[service]!.work;
    const limitGauge = this.metrics.concurrencyLimit.labels(service);
    const pacing = new ServicePacing({
      floor: cfg.pacing.floor,
      ceiling: cfg.prefetch,
      decrease: cfg.pacing.decrease,
      maxPauseMs: cfg.pacing.maxPauseMs,
      onLimit: (limit) => {
        limitGauge.set(limit);
        scheduler.pump();
      },
      onPause: (untilMs, retryAfterS) => {
        this.metrics.pacingPauses.inc({ service });
        logger.info({ retryAfterS, until: new Date(untilMs).toISOString() }, 'downstream asked to retry later: no job of the service starts until then');
        scheduler.pauseUntil(untilMs);
      },
    });
    limitGauge.set(pacing.limit);
    const slots = new TenantSlots({
      defaultCap: Math.max(1, Math.ceil(cfg.prefetch * cfg.tenantShare)),
      caps: this.config.tenantConcurrency,
      noisyFraction: this.config.noisyTenantFraction,
      noisySustainMs: this.config.noisyTenantSustainMs,
    });
    const scheduler = new WorkScheduler({
      lanes: this.topology.lanes[service]!,
      normalMinShare: cfg.normalMinShare,
      slots,
      // Breaker open: nothing starts; half-open: one probe; closed: the adaptive limit.
      limit: () => (downstream.state === 'open' ? 0 : downstream.state === 'half-open' ? 1 : pacing.limit),
    });
    this.schedulers.set(service, scheduler);
    this.pacing.set(service, pacing);
    this.#tenantSlots.set(service, { slots, pacing });
    const handler = createWorkHandler({
      downstream,
      topology: this.topology,
      publisher: () => this.#publisher,
      publishEvent: (e) => this.#outbox.add(e),
      metrics: this.metrics,
      logger,
      maxResultBytes: this.config.maxResultBytes,
      onBreakerOpen: () => this.#syncConsumption(),
      isCancelled: (tenant, jobId) => this.cancellations.has(tenant, jobId),
      pacing,
    });
    for (const lane of this.topology.lanes[service]!) {
      const work = new QueueConsumer({
        startPaused: true,
        queue: this.topology.names.workQueue(service, lane),
        prefetch: cfg.prefetch,
        logger,
        onHandlerError: (err) => this.#onHandlerError(err),
        // A job still waiting when its channel died was requeued by the broker: it does not run here.
        handler: (msg, live) => scheduler.submit(lane, tenantHeader(msg), () => (live() ? handler(msg, lane) : Promise.resolve('requeue'))),
      });
      this.#consumers.push(work);
      this.#consumerMeta.set(work, { service, kind: 'work' });
    }
  }

  /** Every service's tenants with jobs running (the tenant gauges, read at scrape time). */
  #tenantShares(): Array<{ service: string; tenant: string; inflight: number; share: number; noisy: boolean }> {
    const out = [];
    for (const [service, { slots, pacing }] of this.#tenantSlots) for (const t of slots.shares(pacing.limit)) out.push({ service, ...t });
    return out;
  }

  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? 0;
  }

  #onHandlerError(err: unknown): void {
    this.metrics.unhandledErrors.inc();
    this.#logger.error({ err }, 'unexpected error while handling a delivery');
  }

  /**
   * Breaker open: stop pulling jobs (no attempts spent while the downstream is down). Half-open:
   * consume again with prefetch 1, so one probe decides. Closed: full prefetch again.
   */
  #onBreakerState(service: string, state: BreakerState, retryAfterS: number): void {
    this.metrics.breakerState.set({ service }, BREAKER_GAUGE[state]);
    this.metrics.breakerTransitions.inc({ service, to: state });
    this.#logger.warn({ service, breaker: state, retryAfterS }, 'circuit breaker state changed');
    this.#syncConsumption();
    this.schedulers.get(service)?.pump();
    const event: BreakerEvent = { v: 1, kind: 'breaker', service, state, retryAfterS, at: Date.now() };
    this.#publisher
      ?.publish(this.topology.names.eventsExchange, breakerEventRoutingKey(service), encodeEvent(event), { messageId: nextEventId(), contentType: 'application/json' }, 'event')
      .catch(() => {});
  }

  /**
   * Brings every consumer to the state it should be in: consuming only while running with the
   * publish connection up; job consumers also not while their breaker is open, and with prefetch 1
   * while it is half-open. Serialized, so overlapping transitions apply in order.
   */
  #syncConsumption(): void {
    this.#syncChain = this.#syncChain
      .then(async () => {
        const publishUp = this.#publishConn.state === 'connected';
        for (const c of this.#consumers) {
          const { service, kind } = this.#consumerMeta.get(c)!;
          const breaker = this.downstreams.get(service)!.state;
          const want = this.#state === 'running' && publishUp && !(kind === 'work' && breaker === 'open');
          if (!want) {
            if (!c.paused) await c.pause();
          } else await c.resume(kind === 'work' && breaker === 'half-open' ? 1 : undefined);
        }
      })
      .catch((err: unknown) => this.#logger.warn({ err }, 'could not change consumption'));
  }

  /**
   * Asks the broker whether a direct reply-to address still has its consumer: a passive declare of
   * the `amq.rabbitmq.reply-to.*` name answers declare-ok while the requester's channel lives and
   * 404 once it is gone (RabbitMQ 3.x and 4.x). The 404 closes the checking channel, so a fresh one
   * is opened for the next check. Fails open (true) when it cannot ask.
   */
  #requesterAlive(replyTo: string): Promise<boolean> {
    if (!replyTo.startsWith(`${DIRECT_REPLY_PREFIX}.`)) return Promise.resolve(true);
    if (this.#goneRequesters.has(replyTo)) return Promise.resolve(false);
    let check = this.#requesterChecks.get(replyTo);
    if (!check) {
      check = this.#checkRequester(replyTo).finally(() => this.#requesterChecks.delete(replyTo));
      this.#requesterChecks.set(replyTo, check);
    }
    return check;
  }

  async #checkRequester(replyTo: string): Promise<boolean> {
    // A 404 closes the checking channel, failing the checks sent on it after that one: those are
    // asked again on a fresh channel rather than taken as an answer. Each such close is another
    // address found gone, so a check retried because of it either finds its own address gone or
    // gets an answer; with many requesters gone at once (a closed enqueuer connection takes all its
    // reply channels) 3 tries were not enough and the request ran unchecked (92 of 870 cut-off
    // requests reached the downstream after their 503 in sync-faults.test.ts).
    for (let tries = 0; tries < REQUESTER_CHECK_TRIES; tries++) {
      if (this.#goneRequesters.has(replyTo)) return false;
      const connection = this.#publishConn.connection;
      if (!connection) return true;
      let channel: Channel;
      try {
        channel = await this.#openCheckChannel(connection);
      } catch (err) {
        this.#logger.warn({ err }, 'requester check channel not opened; the sync request runs unchecked');
        return true;
      }
      try {
        await channel.checkQueue(replyTo);
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === 404 || /\b404\b/.test((err as Error).message)) {
          this.#goneRequesters.add(replyTo);
          if (this.#goneRequesters.size > GONE_REQUESTERS_MAX) this.#goneRequesters.delete(oldestKey(this.#goneRequesters)!);
          return false;
        }
        if (/closed|ended/i.test((err as Error).message)) continue;
        this.#logger.warn({ err }, 'requester check failed; the sync request runs');
        return true;
      }
    }
    return true;
  }

  #openCheckChannel(connection: ChannelModel): Promise<Channel> {
    if (this.#checkChannel) return this.#checkChannel;
    const opened = connection.createChannel().then((ch) => {
      ch.on('error', () => {}); // a 404 on a gone requester closes it; that 404 is the answer
      ch.on('close', () => {
        if (this.#checkChannel === opened) this.#checkChannel = undefined;
      });
      return ch;
    });
    opened.catch(() => {
      if (this.#checkChannel === opened) this.#checkChannel = undefined;
    });
    this.#checkChannel = opened;
    return opened;
  }

  #sendReply(replyTo: string, correlationId: string, reply: ReplyEnvelope): void {
    const channel = this.#replyChannel;
    if (!channel) {
      this.#logger.warn({ correlationId }, 'reply dropped: publish connection down');
      return;
    }
    try {
      channel.publish('', replyTo, reply.body, encodeReply(correlationId, reply));
    } catch (err) {
      this.#logger.warn({ err, correlationId }, 'reply dropped: publish failed');
    }
  }

  /** Each consumed service's longest delivery hold against the consumer timeout, once checked at the first connection. */
  get consumerTimeout(): readonly ConsumerTimeoutFinding[] | undefined {
    return this.#consumerTimeout;
  }

  /** Once per process; throws GW_ERR_CONSUMER_TIMEOUT_UNSAFE (fatal: the connection stops, main.ts exits 78). */
  async #checkConsumerTimeout(): Promise<void> {
    if (this.#consumerTimeout) return;
    const names = this.topology.names;
    this.#consumerTimeout = await checkConsumerTimeouts({
      services: this.config.services,
      consume: this.config.consume,
      queues: (svc) => [names.rpcQueue(svc), ...this.topology.lanes[svc]!.map((lane) => names.workQueue(svc, lane))],
      publishTimeoutMs: this.config.publishTimeoutMs,
      configuredMs: this.config.brokerConsumerTimeoutMs,
      rabbitmqUrl: this.config.rabbitmqUrl,
      managementUrl: this.config.managementUrl,
      logger: this.#logger,
    });
  }

  /** The broker as probed on the first consume connection (undefined before). */
  get brokerCapabilities(): BrokerCapabilities | undefined {
    return this.#probe.capabilities;
  }

  readiness(): { ready: boolean; checks: Record<string, boolean | string>; broker?: BrokerCapabilities; consumerTimeout?: readonly ConsumerTimeoutFinding[] } {
    const consuming = this.#consumers.every((c) => c.consuming || c.paused);
    const checks: Record<string, boolean | string> = {
      state: this.#state,
      consumeConnection: this.#consumeConn.state === 'connected' ? true : (this.#consumeConn.lastError ?? this.#consumeConn.state),
      publishConnection: this.#publishConn.state === 'connected' ? true : (this.#publishConn.lastError ?? this.#publishConn.state),
      consumers: consuming,
    };
    const ready = this.#state === 'running' && this.#consumeConn.state === 'connected' && this.#publishConn.state === 'connected' && consuming;
    return { ready, checks, ...(this.#probe.capabilities ? { broker: this.#probe.capabilities } : {}), ...(this.#consumerTimeout ? { consumerTimeout: this.#consumerTimeout } : {}) };
  }

  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new Error(`cannot start from state ${this.#state}`);
    this.#setState('starting');
    this.#server = createServer((req, res) => {
      void this.#serveHttp(req.url ?? '/', res);
    });
    this.#publishConn.start();
    // The consuming connection's set-up declares the topology: the cancellation stream is read
    // once it exists (on a fresh broker, earlier reads failed with NOT_FOUND warnings until it did).
    this.#consumeConn.once('up', () => this.#cancellationReader.start());
    this.#consumeConn.start();
    await new Promise<void>((resolve, reject) => {
      this.#server!.once('error', reject);
      this.#server!.listen(this.config.port, this.config.host, () => resolve());
    });
    this.#setState('running');
    this.#syncConsumption();
    this.#logger.info({ port: this.port, services: this.config.consume }, 'dequeuer started');
  }

  async #serveHttp(url: string, res: ServerResponse): Promise<void> {
    try {
      if (url === '/healthz') {
        res.setHeader('content-type', 'application/json');
        res.end('{"status":"ok"}');
      } else if (url === '/readyz') {
        const r = this.readiness();
        res.statusCode = r.ready ? 200 : 503;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ status: r.ready ? 'ready' : 'not ready', checks: r.checks, ...(r.broker ? { broker: r.broker } : {}), ...(r.consumerTimeout ? { consumerTimeout: r.consumerTimeout } : {}) }));
      } else if (url === '/metrics') {
        res.setHeader('content-type', this.registry.contentType);
        res.end(await this.registry.metrics());
      } else {
        writeProblem(res, new GatewayError('GW_ERR_NOT_FOUND', 'no such route'));
      }
    } catch (err) {
      this.#logger.error({ err }, 'health endpoint failed');
      if (res.headersSent) res.destroy();
      else writeProblem(res, err);
    }
  }

  /** Resolves once both connections are up and consumers are attached. */
  async waitUntilReady(timeoutMs = 30_000): Promise<void> {
    await Promise.all([this.#consumeConn.waitUntilUp(timeoutMs), this.#publishConn.waitUntilUp(timeoutMs), this.#cancellationReader.waitUntilUp(timeoutMs)]);
  }

  /** Stop consuming, let in-flight deliveries finish (bounded), hand back the rest, close. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#setState('draining');
    this.#syncConsumption();
    await this.#syncChain;
    // Jobs delivered but not started go back to their lanes now; only running ones are waited for.
    for (const scheduler of this.schedulers.values()) scheduler.releaseWaiting('requeue');
    const drained = await Promise.all(this.#consumers.map((c) => c.idle(this.config.shutdownGraceMs)));
    if (drained.includes(false)) this.#logger.warn('shutdown grace over: unfinished deliveries go back to their queues');
    const errors: unknown[] = [];
    const steps: Array<() => Promise<unknown>> = [
      ...this.#consumers.map((c) => () => c.close()),
      () => this.#consumeConn.close(),
      () => this.#outbox.close(),
      () => this.#publishConn.close(),
      () => this.#cancellationReader.close(),
      ...[...this.downstreams.values()].map((d) => () => d.close()),
      () =>
        new Promise<void>((resolve) => {
          if (!this.#server) return resolve();
          this.#server.close(() => resolve());
          this.#server.closeAllConnections();
        }),
    ];
    for (const step of steps) await step().catch((err: unknown) => errors.push(err));
    this.#setState(errors.length ? 'failed' : 'stopped');
    if (errors.length) throw new AggregateError(errors, 'dequeuer stop failed');
  }

  #setState(state: State): void {
    this.#state = state;
    this.#logger.info({ state }, 'dequeuer state changed');
  }
}
