/**
 * Every broker name the gateway uses, computed from one prefix. Names only come from here so the
 * management UI reads the same everywhere and a test prefix isolates a test's objects.
 */

/** Service names end up in queue names and topic routing keys, so they are restricted. */
export const SERVICE_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Number of binary delay levels: level n holds a message 2^n delay units. */
export const DELAY_LEVELS = 25;

/**
 * A work lane of a service: a normal lane's index (0 … lanes−1) or the high-priority lane. Lane 0
 * keeps the service's original queue name and routing key, so jobs queued before lanes existed
 * are still consumed.
 */
export type Lane = number | 'high';

/** The word a lane adds to its queue name and routing key ('' for lane 0). */
export function laneSuffix(lane: Lane): string {
  return lane === 0 ? '' : `.${lane}`;
}

export interface Names {
  readonly prefix: string;
  /** Direct exchange for requests and jobs. */
  readonly workExchange: string;
  /** Direct exchange the work queues dead-letter into. */
  readonly deadLetterExchange: string;
  /** Topic exchange of job transitions and breaker state; everything published there lands in {@link eventsStream}. */
  readonly eventsExchange: string;
  /**
   * The stream every enqueuer replica reads job and breaker events from by offset (same name as the
   * exchange: queues and exchanges are separate namespaces).
   */
  readonly eventsStream: string;
  /** Fanout exchange + queue catching anything the DLX or the delay machinery cannot route. */
  readonly unroutableExchange: string;
  readonly unroutableQueue: string;
  /** Topic exchange at the end of the delay levels; routes `#.work.<svc>` back to work queues. */
  readonly delayDeliverExchange: string;
  rpcQueue(service: string): string;
  /** A work lane's queue (lane 0 by default: `<prefix>.<svc>.work`). */
  workQueue(service: string, lane?: Lane): string;
  deadLetterQueue(service: string): string;
  rpcRoutingKey(service: string): string;
  /** A work lane's routing key on the work exchange (lane 0 by default: `work.<svc>`). */
  workRoutingKey(service: string, lane?: Lane): string;
  /**
   * Key a DLQ rotation puts its copies back with: bound only to the DLQ, so the enqueuers' events
   * queues (bound to the dead-letter exchange by service name, for real deaths) never see them.
   */
  dlqRotationRoutingKey(service: string): string;
  delayLevel(level: number): string;
  /**
   * Streams of operator actions (docs/adr/1600-dashboard-dlq-workbench-cancel.md), fed through the
   * direct control exchange with their routing keys (not the events exchange: its stream takes
   * every key): job cancellations (every dequeuer replica reads them before calling a downstream)
   * and the audit trail of DLQ replays, discards and cancels.
   */
  readonly controlExchange: string;
  readonly cancellationStream: string;
  readonly auditStream: string;
  readonly cancellationRoutingKey: string;
  readonly auditRoutingKey: string;
}

export function names(prefix = 'gw'): Names {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return Object.freeze({
    prefix,
    workExchange: `${prefix}.work`,
    deadLetterExchange: `${prefix}.dlx`,
    eventsExchange: `${prefix}.events`,
    eventsStream: `${prefix}.events`,
    unroutableExchange: `${prefix}.unroutable`,
    unroutableQueue: `${prefix}.unroutable`,
    delayDeliverExchange: `${prefix}.delay.deliver`,
    rpcQueue: (service: string) => `${prefix}.${service}.rpc`,
    workQueue: (service: string, lane: Lane = 0) => `${prefix}.${service}.work${laneSuffix(lane)}`,
    deadLetterQueue: (service: string) => `${prefix}.${service}.dlq`,
    rpcRoutingKey: (service: string) => `rpc.${service}`,
    workRoutingKey: (service: string, lane: Lane = 0) => `work.${service}${laneSuffix(lane)}`,
    dlqRotationRoutingKey: (service: string) => `rotate.${service}`,
    delayLevel: (level: number) => `${prefix}.delay.L${pad(level)}`,
    controlExchange: `${prefix}.control`,
    cancellationStream: `${prefix}.cancellations`,
    auditStream: `${prefix}.audit`,
    cancellationRoutingKey: 'control.cancel',
    auditRoutingKey: 'control.audit',
  });
}
