import { managementJson } from '../shared/amqp/capabilities.ts';
import { splitBrokerUrls } from '../shared/amqp/broker-connection.ts';
import { GatewayError } from '../shared/errors.ts';
import type { ServiceConfig, Services } from '../shared/config/services.ts';
import { COPY_RETRY_MS } from './work-handler.ts';

/**
 * The longest a dequeuer can hold one delivery of a service unacked, and of what it is made. A job
 * delivery waits in the service's scheduler (dequeuer/fairness) until it may start: a downstream's
 * `Retry-After` pauses every start for up to `work.pacing.maxPauseMs`; then the downstream call
 * (`timeoutMs`; a message deadline only shortens it); then the confirmed publish of its retry copy or
 * give-back (retried for {@link COPY_RETRY_MS}, the last try bounded by `PUBLISH_TIMEOUT_MS`) before
 * it is acked. A sync request is held for its call and reply only, which is less.
 *
 * Behind other deliveries it waits longer: the lanes' consumers hold up to `(lanes + 1) × prefetch`
 * deliveries, started `pacing.floor` at a time when the pacing limit is at its floor, so the last one
 * can wait `⌈held / floor⌉` calls (`queuedWorstMs`).
 */
export interface DeliveryHold {
  service: string;
  downstreamTimeoutMs: number;
  /** Retry-After pause before the start: work.pacing.maxPauseMs. */
  pauseMs: number;
  /** Copy publish after the call: COPY_RETRY_MS + PUBLISH_TIMEOUT_MS. */
  copyPublishMs: number;
  /** pause + downstream timeout + copy publish: the hold of the next delivery to start. */
  holdMs: number;
  /** Deliveries the service's work consumers can hold: (lanes + 1 high lane) × prefetch. */
  heldDeliveries: number;
  /** The last of them at the pacing floor: pause + ⌈held / floor⌉ downstream timeouts + copy publish. */
  queuedWorstMs: number;
}

type HoldConfig = Pick<ServiceConfig, 'timeoutMs'> & { work: Pick<ServiceConfig['work'], 'lanes' | 'prefetch'> & { pacing: Pick<ServiceConfig['work']['pacing'], 'floor' | 'maxPauseMs'> } };

export function deliveryHold(service: string, config: HoldConfig, publishTimeoutMs: number): DeliveryHold {
  const copyPublishMs = COPY_RETRY_MS + publishTimeoutMs;
  const pauseMs = config.work.pacing.maxPauseMs;
  const heldDeliveries = (config.work.lanes + 1) * config.work.prefetch;
  const waves = Math.ceil(heldDeliveries / config.work.pacing.floor);
  return {
    service,
    downstreamTimeoutMs: config.timeoutMs,
    pauseMs,
    copyPublishMs,
    holdMs: pauseMs + config.timeoutMs + copyPublishMs,
    heldDeliveries,
    queuedWorstMs: pauseMs + waves * config.timeoutMs + copyPublishMs,
  };
}

/** The consumer timeout that applies to a service's queues, and where it was read. */
export interface ConsumerTimeout {
  ms: number;
  /** `BROKER_CONSUMER_TIMEOUT_MS` (config) or `broker: <queue> <argument or policy key>`. */
  source: string;
}

export interface ConsumerTimeoutFinding extends DeliveryHold {
  consumerTimeoutMs: number;
  source: string;
  /** On `holdMs`: refuse when it reaches the timeout, warn above half of it. */
  verdict: 'ok' | 'warn' | 'refuse';
  /** On `queuedWorstMs`: warn when it reaches the timeout (a backlog behind a slow downstream at the pacing floor). */
  queued: 'ok' | 'warn';
}

/**
 * The start-up decision: a service whose longest hold reaches the consumer timeout is refused (the
 * broker would close the channel with 406 PRECONDITION_FAILED under a slow downstream and redeliver
 * every unacked delivery of it); above half of it is a warning (little margin for a slow ack path).
 */
export function judgeConsumerTimeout(hold: DeliveryHold, timeout: ConsumerTimeout): ConsumerTimeoutFinding {
  const verdict = hold.holdMs >= timeout.ms ? 'refuse' : hold.holdMs > timeout.ms / 2 ? 'warn' : 'ok';
  return { ...hold, consumerTimeoutMs: timeout.ms, source: timeout.source, verdict, queued: hold.queuedWorstMs >= timeout.ms ? 'warn' : 'ok' };
}

/** One line per finding: `echo: holds a delivery up to 85000 ms (Retry-After pause 60000 + downstream timeoutMs 10000 + copy publish 15000) against a consumer timeout of 1800000 ms (BROKER_CONSUMER_TIMEOUT_MS)`. */
export function describeFinding(f: ConsumerTimeoutFinding): string {
  return `${f.service}: holds a delivery up to ${f.holdMs} ms (Retry-After pause ${f.pauseMs} + downstream timeoutMs ${f.downstreamTimeoutMs} + copy publish ${f.copyPublishMs}) ` +
    `against a consumer timeout of ${f.consumerTimeoutMs} ms (${f.source})`;
}

/** Throws `GW_ERR_CONSUMER_TIMEOUT_UNSAFE` naming every refused service and the fix. */
export function assertConsumerTimeouts(findings: readonly ConsumerTimeoutFinding[]): void {
  const refused = findings.filter((f) => f.verdict === 'refuse');
  if (refused.length === 0) return;
  throw new GatewayError('GW_ERR_CONSUMER_TIMEOUT_UNSAFE',
    `${refused.map(describeFinding).join('; ')}. The broker would close the channel (406 PRECONDITION_FAILED) and redeliver its unacked deliveries; ` +
    'lower the service\'s timeoutMs or work.pacing.maxPauseMs, or raise the broker\'s consumer_timeout (and BROKER_CONSUMER_TIMEOUT_MS to match)');
}

/**
 * The consumer timeout of a queue as the management API shows it (`GET /api/queues/<vhost>/<name>`):
 * the `x-consumer-timeout` argument, else the `consumer-timeout` key of its effective policy (the
 * merge of policy and operator policy); undefined when neither is set (the node-wide
 * `consumer_timeout` applies, which the API does not show).
 */
export function queueConsumerTimeout(q: { name: string; arguments?: Record<string, unknown>; effective_policy_definition?: Record<string, unknown> | unknown[] }): ConsumerTimeout | undefined {
  const arg = q.arguments?.['x-consumer-timeout'];
  if (typeof arg === 'number' && arg > 0) return { ms: arg, source: `broker: ${q.name} x-consumer-timeout` };
  const policy = Array.isArray(q.effective_policy_definition) ? undefined : q.effective_policy_definition?.['consumer-timeout'];
  if (typeof policy === 'number' && policy > 0) return { ms: policy, source: `broker: ${q.name} policy consumer-timeout` };
  return undefined;
}

/** The queues' consumer timeouts the broker shows (by queue name; queues without one are absent). */
export async function readBrokerConsumerTimeouts(managementUrl: string, vhost: string, timeoutMs = 2_000): Promise<Map<string, ConsumerTimeout>> {
  type Row = Parameters<typeof queueConsumerTimeout>[0];
  const rows = await managementJson<Row[]>(managementUrl, `api/queues/${encodeURIComponent(vhost)}?columns=name,arguments,effective_policy_definition`, timeoutMs);
  const out = new Map<string, ConsumerTimeout>();
  for (const row of rows) {
    const t = queueConsumerTimeout(row);
    if (t) out.set(row.name, t);
  }
  return out;
}

/** A service's consumer timeout: the smallest over its queues, each the broker's value or else the configured one. */
export function serviceConsumerTimeout(queues: readonly string[], broker: ReadonlyMap<string, ConsumerTimeout>, configured: ConsumerTimeout): ConsumerTimeout {
  const each = queues.map((q) => broker.get(q) ?? configured);
  return each.reduce((a, b) => (b.ms < a.ms ? b : a), each[0] ?? configured);
}

/** The virtual host of the first broker URL (`/` when the path is empty). */
export function brokerVhost(rabbitmqUrl: string): string {
  const path = new URL(splitBrokerUrls(rabbitmqUrl)[0]!).pathname.slice(1);
  return path ? decodeURIComponent(path) : '/';
}

/**
 * The start-up check (once per process, on the first consume connection, after the topology exists):
 * reads the queues' consumer timeouts from the management API when configured (preferred; a failed
 * read falls back to BROKER_CONSUMER_TIMEOUT_MS and says so), logs which value was used, warns
 * about each service above half of it and throws `GW_ERR_CONSUMER_TIMEOUT_UNSAFE` for those that reach it.
 */
export async function checkConsumerTimeouts(opts: {
  services: Services;
  consume: readonly string[];
  queues: (service: string) => readonly string[];
  publishTimeoutMs: number;
  configuredMs: number;
  rabbitmqUrl: string;
  managementUrl: string | undefined;
  logger: { info: (obj: object, msg: string) => void; warn: (obj: object, msg: string) => void };
}): Promise<ConsumerTimeoutFinding[]> {
  const configured: ConsumerTimeout = { ms: opts.configuredMs, source: 'BROKER_CONSUMER_TIMEOUT_MS' };
  let broker = new Map<string, ConsumerTimeout>();
  let brokerNote = 'RABBITMQ_MANAGEMENT_URL not set';
  if (opts.managementUrl) {
    try {
      broker = await readBrokerConsumerTimeouts(opts.managementUrl, brokerVhost(opts.rabbitmqUrl));
      brokerNote = broker.size ? `${broker.size} queue(s) with their own consumer timeout` : 'no queue has its own consumer timeout (the node-wide one is not visible)';
    } catch (err) {
      brokerNote = `management API not read: ${(err as Error).message}`;
    }
  }
  const findings = opts.consume.map((svc) =>
    judgeConsumerTimeout(deliveryHold(svc, opts.services[svc]!, opts.publishTimeoutMs), serviceConsumerTimeout(opts.queues(svc), broker, configured)));
  const sources = [...new Set(findings.map((f) => f.source))].join(', ');
  opts.logger.info({ consumerTimeout: findings, broker: brokerNote }, `consumer timeout check: ${sources} used (${brokerNote})`);
  for (const f of findings.filter((x) => x.verdict === 'warn')) {
    opts.logger.warn({ consumerTimeout: f }, `consumer timeout: ${describeFinding(f)}, above half of it: a slow downstream leaves little margin before the broker closes the channel`);
  }
  for (const f of findings.filter((x) => x.verdict !== 'refuse' && x.queued === 'warn')) {
    opts.logger.warn({ consumerTimeout: f }, `consumer timeout: ${f.service}: the last of ${f.heldDeliveries} held deliveries can wait up to ${f.queuedWorstMs} ms ` +
      `at the pacing floor (every call taking timeoutMs ${f.downstreamTimeoutMs}), not less than the consumer timeout of ${f.consumerTimeoutMs} ms (${f.source}): ` +
      'raise work.pacing.floor or lower work.prefetch, work.lanes or timeoutMs');
  }
  assertConsumerTimeouts(findings);
  return findings;
}
