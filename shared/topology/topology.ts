import type { Services } from '../config/services.ts';
import { laneFor, serviceLanes, type Priority } from './lanes.ts';
import { DELAY_LEVELS, laneSuffix, names, type Lane, type Names } from './names.ts';

export type ExchangeType = 'direct' | 'topic' | 'fanout';

export interface ExchangeSpec {
  readonly name: string;
  readonly type: ExchangeType;
  readonly arguments: Readonly<Record<string, unknown>>;
}

export interface QueueSpec {
  readonly name: string;
  readonly arguments: Readonly<Record<string, unknown>>;
}

export interface BindingSpec {
  readonly source: string;
  readonly destination: string;
  readonly destinationType: 'queue' | 'exchange';
  readonly routingKey: string;
}

/** The broker objects of one gateway deployment: plain frozen data, applied or rendered elsewhere. */
export interface Topology {
  readonly names: Names;
  /** Unit of the binary delay levels (ms): level n holds a message 2^n units. */
  readonly delayUnitMs: number;
  readonly services: readonly string[];
  /** Every work lane of each service (normal lanes in order, then `high`). */
  readonly lanes: Readonly<Record<string, readonly Lane[]>>;
  readonly exchanges: readonly ExchangeSpec[];
  readonly queues: readonly QueueSpec[];
  readonly bindings: readonly BindingSpec[];
}

export interface TopologyOptions {
  /** Prefix of every name. @default 'gw' */
  prefix?: string;
  /** @default 100 */
  delayUnitMs?: number;
  /** Retention of the events stream by age (`x-max-age`: a number and Y, M, D, h, m or s). @default '1h' */
  eventsMaxAge?: string;
  /** Retention of the events stream by size (`x-max-length-bytes`). @default 268435456 (256 MiB) */
  eventsMaxBytes?: number;
}

/** Defaults of the events stream's retention (docs/configuration.md: EVENTS_MAX_AGE, EVENTS_MAX_BYTES). */
export const EVENTS_STREAM_DEFAULTS = Object.freeze({ maxAge: '1h', maxBytes: 256 * 1024 * 1024 });

/**
 * Arguments of the events stream. Retention drops whole segments, so a segment is an eighth of the
 * byte bound (at least 1 MiB, at most RabbitMQ's 500 MB default): the retained window overshoots
 * the bound by at most one segment.
 */
export function eventsStreamArguments(maxAge: string, maxBytes: number): Record<string, unknown> {
  return {
    'x-queue-type': 'stream',
    'x-max-age': maxAge,
    'x-max-length-bytes': maxBytes,
    'x-stream-max-segment-size-bytes': Math.min(500_000_000, Math.max(1024 * 1024, Math.floor(maxBytes / 8))),
  };
}

/**
 * Routing key that carries a delay of `units` through the binary levels: one word per level,
 * highest level first, then the lane's work routing key (`work.<service>[.<lane>]`).
 */
export function delayRoutingKey(units: number, service: string, lane: Lane = 0): string {
  const bits: string[] = [];
  for (let level = DELAY_LEVELS - 1; level >= 0; level--) bits.push(Math.floor(units / 2 ** level) % 2 === 1 ? '1' : '0');
  return `${bits.join('.')}.work.${service}${laneSuffix(lane)}`;
}

/** Retention of the operator-action streams: cancellations outlive the longest delay (2^25 units of 100 ms ≈ 39 days). */
export const STREAM_RETENTION = Object.freeze({
  cancellations: Object.freeze({ maxAge: '40D', maxBytes: 64 * 1024 * 1024 }),
  audit: Object.freeze({ maxAge: '90D', maxBytes: 256 * 1024 * 1024 }),
});
const STREAM_SEGMENT_BYTES = 8 * 1024 * 1024;

/** Largest delay (in units) the levels can hold. */
export const MAX_DELAY_UNITS = 2 ** DELAY_LEVELS - 1;

/** Topic pattern matching keys whose word for `level` is `bit`. */
function levelPattern(level: number, bit: '0' | '1'): string {
  return [...Array<string>(DELAY_LEVELS - 1 - level).fill('*'), bit, '#'].join('.');
}

/**
 * Builds the topology for a services map. Every queue argument is fixed at declaration (see
 * docs/adr/0002-queue-arguments-not-policies.md for why arguments and not policies).
 */
export function buildTopology(services: Services, options: TopologyOptions = {}): Topology {
  const n = names(options.prefix ?? 'gw');
  const delayUnitMs = options.delayUnitMs ?? 100;
  const exchanges: ExchangeSpec[] = [];
  const queues: QueueSpec[] = [];
  const bindings: BindingSpec[] = [];
  const toUnroutable = { 'alternate-exchange': n.unroutableExchange };

  exchanges.push(
    { name: n.unroutableExchange, type: 'fanout', arguments: {} },
    { name: n.workExchange, type: 'direct', arguments: {} },
    { name: n.deadLetterExchange, type: 'direct', arguments: toUnroutable },
    { name: n.eventsExchange, type: 'topic', arguments: {} },
    { name: n.delayDeliverExchange, type: 'topic', arguments: toUnroutable },
  );
  queues.push({ name: n.unroutableQueue, arguments: { 'x-queue-type': 'quorum' } });
  bindings.push({ source: n.unroutableExchange, destination: n.unroutableQueue, destinationType: 'queue', routingKey: '' });
  queues.push({ name: n.eventsStream, arguments: eventsStreamArguments(options.eventsMaxAge ?? EVENTS_STREAM_DEFAULTS.maxAge, options.eventsMaxBytes ?? EVENTS_STREAM_DEFAULTS.maxBytes) });
  bindings.push({ source: n.eventsExchange, destination: n.eventsStream, destinationType: 'queue', routingKey: '#' });

  for (let level = DELAY_LEVELS - 1; level >= 0; level--) {
    const exchange = n.delayLevel(level);
    const next = level === 0 ? n.delayDeliverExchange : n.delayLevel(level - 1);
    exchanges.push({ name: exchange, type: 'topic', arguments: toUnroutable });
    queues.push({
      name: exchange,
      arguments: {
        'x-queue-type': 'quorum',
        'x-message-ttl': 2 ** level * delayUnitMs,
        'x-overflow': 'reject-publish',
        'x-dead-letter-exchange': next,
        'x-dead-letter-strategy': 'at-least-once',
      },
    });
    bindings.push(
      { source: exchange, destination: exchange, destinationType: 'queue', routingKey: levelPattern(level, '1') },
      { source: exchange, destination: next, destinationType: 'exchange', routingKey: levelPattern(level, '0') },
    );
  }

  // Operator actions, kept by age and size (segments small enough for the size bound to bite).
  // Cancellations live as long as the longest delay a job can wait, so a cancelled job never runs.
  queues.push(
    { name: n.cancellationStream, arguments: { 'x-queue-type': 'stream', 'x-max-age': STREAM_RETENTION.cancellations.maxAge, 'x-max-length-bytes': STREAM_RETENTION.cancellations.maxBytes, 'x-stream-max-segment-size-bytes': STREAM_SEGMENT_BYTES } },
    { name: n.auditStream, arguments: { 'x-queue-type': 'stream', 'x-max-age': STREAM_RETENTION.audit.maxAge, 'x-max-length-bytes': STREAM_RETENTION.audit.maxBytes, 'x-stream-max-segment-size-bytes': STREAM_SEGMENT_BYTES } },
  );
  exchanges.push({ name: n.controlExchange, type: 'direct', arguments: {} });
  bindings.push(
    { source: n.controlExchange, destination: n.cancellationStream, destinationType: 'queue', routingKey: n.cancellationRoutingKey },
    { source: n.controlExchange, destination: n.auditStream, destinationType: 'queue', routingKey: n.auditRoutingKey },
  );

  const serviceNames = Object.keys(services).sort();
  const lanes: Record<string, readonly Lane[]> = {};
  for (const svc of serviceNames) {
    const cfg = services[svc]!;
    lanes[svc] = Object.freeze(serviceLanes(cfg.work.lanes));
    queues.push({
      name: n.rpcQueue(svc),
      arguments: { 'x-queue-type': 'classic', 'x-max-length': cfg.rpc.maxLength, 'x-overflow': 'reject-publish' },
    });
    bindings.push({ source: n.workExchange, destination: n.rpcQueue(svc), destinationType: 'queue', routingKey: n.rpcRoutingKey(svc) });
    // Every lane is a work queue with the same arguments: one DLQ, one delivery limit, one bound each.
    for (const lane of lanes[svc]!) {
      queues.push({
        name: n.workQueue(svc, lane),
        arguments: {
          'x-queue-type': 'quorum',
          'x-max-length': cfg.work.maxLength,
          'x-overflow': 'reject-publish',
          'x-dead-letter-exchange': n.deadLetterExchange,
          'x-dead-letter-routing-key': svc,
          'x-dead-letter-strategy': 'at-least-once',
          'x-delivery-limit': cfg.work.deliveryLimit,
        },
      });
      bindings.push(
        { source: n.workExchange, destination: n.workQueue(svc, lane), destinationType: 'queue', routingKey: n.workRoutingKey(svc, lane) },
        { source: n.delayDeliverExchange, destination: n.workQueue(svc, lane), destinationType: 'queue', routingKey: `#.${n.workRoutingKey(svc, lane)}` },
      );
    }
    queues.push({
      name: n.deadLetterQueue(svc),
      arguments: {
        'x-queue-type': 'quorum',
        'x-max-length': cfg.dlqMaxLength,
        'x-overflow': 'reject-publish',
        'x-single-active-consumer': true,
      },
    });
    bindings.push(
      { source: n.deadLetterExchange, destination: n.deadLetterQueue(svc), destinationType: 'queue', routingKey: svc },
      { source: n.deadLetterExchange, destination: n.deadLetterQueue(svc), destinationType: 'queue', routingKey: n.dlqRotationRoutingKey(svc) },
      // Jobs the broker dead-letters by the delivery limit reach the replicas through the stream.
      { source: n.deadLetterExchange, destination: n.eventsStream, destinationType: 'queue', routingKey: svc },
    );
  }

  return deepFreezeTopology({ names: n, delayUnitMs, services: serviceNames, lanes: Object.freeze(lanes), exchanges, queues, bindings });
}

function deepFreezeTopology(t: Topology): Topology {
  for (const list of [t.exchanges, t.queues, t.bindings]) for (const item of list) Object.freeze(item);
  Object.freeze(t.exchanges);
  Object.freeze(t.queues);
  Object.freeze(t.bindings);
  Object.freeze(t.services);
  return Object.freeze(t);
}

/**
 * The lane of a job of `service` (see {@link laneFor}): the enqueuer publishes it there and a DLQ
 * replay puts it back there. A service the topology does not know gets lane 0.
 */
export function jobLane(topology: Pick<Topology, 'lanes'>, job: { service: string; tenant: string; priority?: Priority | undefined }): Lane {
  const lanes = topology.lanes[job.service];
  return lanes ? laneFor(job.tenant, job.priority, lanes.length - 1) : 0;
}
