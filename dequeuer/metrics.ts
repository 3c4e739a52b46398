import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createCommonMetrics, initCommonMetrics, initSeries, type CommonMetrics } from '../shared/metrics.ts';

/** The dequeuer's metrics, declared together on an injected registry. */
export interface DequeuerMetrics extends CommonMetrics {
  consumed: Counter<'service' | 'kind'>;
  queueWait: Histogram<'service' | 'kind'>;
  downstreamRequests: Counter<'service' | 'outcome'>;
  downstreamDuration: Histogram<'service'>;
  expired: Counter<'service'>;
  requesterGone: Counter<'service'>;
  handedBack: Counter<'service'>;
  cancelledSkipped: Counter<'service'>;
  attempts: Counter<'service'>;
  retries: Counter<'service'>;
  deadLetters: Counter<'service' | 'reason'>;
  succeeded: Counter<'service'>;
  dead: Counter<'service'>;
  breakerState: Gauge<'service'>;
  breakerTransitions: Counter<'service' | 'to'>;
  inflight: Gauge<'service' | 'kind'>;
  /** The adaptive limit on in-flight job calls per service (docs/adr/1700). */
  concurrencyLimit: Gauge<'service'>;
  /** `Retry-After` pauses of a service's job consumption. */
  pacingPauses: Counter<'service'>;
  /** Jobs running per tenant, their share of the service's limit and the noisy flag; read at scrape time. */
  tenantInflight: Gauge<'service' | 'tenant'>;
  tenantShare: Gauge<'service' | 'tenant'>;
  tenantNoisy: Gauge<'service' | 'tenant'>;
  /** Set by the dequeuer: each service's tenants with jobs running (feeds the three tenant gauges). */
  tenantShares: { source: (() => Array<{ service: string; tenant: string; inflight: number; share: number; noisy: boolean }>) | undefined };
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Values of the `outcome` label of `gw_downstream_requests_total` (see `outcomeLabel`). */
export const DOWNSTREAM_OUTCOMES = ['success', 'client_error', 'server_error', 'timeout', 'network_error', 'breaker_open'] as const;
/** Values of the `reason` label of `gw_dead_letters_total`. */
export const DEAD_LETTER_REASONS = ['permanent', 'exhausted', 'undecodable'] as const;
export const BREAKER_STATES = ['closed', 'half-open', 'open'] as const;
export const DELIVERY_KINDS = ['rpc', 'work'] as const;
export const DEQUEUER_ROLES = ['dequeuer-consume', 'dequeuer-publish'] as const;
export const DEQUEUER_PUBLISH_KINDS = ['retry', 'giveback', 'event'] as const;

export function createDequeuerMetrics(registry: Registry): DequeuerMetrics {
  const registers = [registry];
  const tenantShares: DequeuerMetrics['tenantShares'] = { source: undefined };
  // The three tenant gauges are filled from one snapshot, taken by the first one collected.
  let snapshot: ReturnType<NonNullable<typeof tenantShares.source>> = [];
  const tenantGauge = (name: string, help: string, pick: (t: (typeof snapshot)[number]) => number, first: boolean): Gauge<'service' | 'tenant'> =>
    new Gauge({
      name, help, labelNames: ['service', 'tenant'], registers,
      collect() {
        if (first) snapshot = tenantShares.source?.() ?? [];
        this.reset();
        for (const t of snapshot) this.set({ service: t.service, tenant: t.tenant }, pick(t));
      },
    });
  return {
    tenantShares,
    concurrencyLimit: new Gauge({ name: 'gw_downstream_concurrency_limit', help: 'Adaptive (AIMD) limit on in-flight job calls to the downstream', labelNames: ['service'], registers }),
    pacingPauses: new Counter({ name: 'gw_downstream_pauses_total', help: 'Pauses of a service\'s job starts asked by a downstream Retry-After', labelNames: ['service'], registers }),
    tenantInflight: tenantGauge('gw_tenant_inflight', 'Jobs of a tenant running at the downstream (tenants with none are absent)', (t) => t.inflight, true),
    tenantShare: tenantGauge('gw_tenant_slot_share', 'Share of the service\'s job slots (its current limit) a tenant holds', (t) => t.share, false),
    tenantNoisy: tenantGauge('gw_tenant_noisy', '1 while a tenant has held more than NOISY_TENANT_FRACTION of the slots for NOISY_TENANT_SUSTAIN_MS', (t) => (t.noisy ? 1 : 0), false),
    ...createCommonMetrics(registry),
    consumed: new Counter({ name: 'gw_messages_consumed_total', help: 'Deliveries taken from work and rpc queues', labelNames: ['service', 'kind'], registers }),
    queueWait: new Histogram({ name: 'gw_queue_wait_seconds', help: 'Time from first publish (gw-enqueued-at) to the first delivery', labelNames: ['service', 'kind'], buckets: LATENCY_BUCKETS, registers }),
    downstreamRequests: new Counter({ name: 'gw_downstream_requests_total', help: 'Downstream calls by outcome', labelNames: ['service', 'outcome'], registers }),
    downstreamDuration: new Histogram({ name: 'gw_downstream_duration_seconds', help: 'Downstream call latency', labelNames: ['service'], buckets: LATENCY_BUCKETS, registers }),
    expired: new Counter({ name: 'gw_messages_expired_total', help: 'Deliveries skipped because their deadline had passed', labelNames: ['service'], registers }),
    requesterGone: new Counter({ name: 'gw_sync_requester_gone_total', help: 'Sync requests skipped because the requester was gone (its reply channel closed)', labelNames: ['service'], registers }),
    handedBack: new Counter({ name: 'gw_jobs_handed_back_total', help: 'Failed calls not counted as an attempt: the breaker was half-open (probe) or open after the call', labelNames: ['service'], registers }),
    cancelledSkipped: new Counter({ name: 'gw_jobs_cancelled_skipped_total', help: 'Job deliveries acked without a call because an operator cancelled the job', labelNames: ['service'], registers }),
    attempts: new Counter({ name: 'gw_job_attempts_total', help: 'Job attempts started', labelNames: ['service'], registers }),
    retries: new Counter({ name: 'gw_retries_total', help: 'Retry copies confirmed into the delay levels', labelNames: ['service'], registers }),
    deadLetters: new Counter({ name: 'gw_dead_letters_total', help: 'Deliveries rejected into the DLQ, by reason', labelNames: ['service', 'reason'], registers }),
    succeeded: new Counter({ name: 'gw_jobs_succeeded_total', help: 'Jobs that ended with a downstream success', labelNames: ['service'], registers }),
    dead: new Counter({ name: 'gw_jobs_dead_total', help: 'Jobs that ended dead-lettered (failed permanently or attempts spent)', labelNames: ['service'], registers }),
    breakerState: new Gauge({ name: 'gw_breaker_state', help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open', labelNames: ['service'], registers }),
    breakerTransitions: new Counter({ name: 'gw_breaker_transitions_total', help: 'Circuit breaker transitions', labelNames: ['service', 'to'], registers }),
    inflight: new Gauge({ name: 'gw_inflight', help: 'Deliveries being processed', labelNames: ['service', 'kind'], registers }),
  };
}

/** Creates every per-service series at 0 (see {@link initSeries}). */
export function initDequeuerMetrics(m: DequeuerMetrics, services: readonly string[]): void {
  initCommonMetrics(m, DEQUEUER_ROLES, DEQUEUER_PUBLISH_KINDS);
  const service = services;
  initSeries(m.consumed, { service, kind: DELIVERY_KINDS });
  initSeries(m.queueWait, { service, kind: DELIVERY_KINDS });
  initSeries(m.inflight, { service, kind: DELIVERY_KINDS });
  initSeries(m.downstreamRequests, { service, outcome: DOWNSTREAM_OUTCOMES });
  initSeries(m.downstreamDuration, { service });
  for (const c of [m.expired, m.requesterGone, m.handedBack, m.cancelledSkipped, m.attempts, m.retries, m.succeeded, m.dead]) initSeries(c, { service });
  initSeries(m.deadLetters, { service, reason: DEAD_LETTER_REASONS });
  initSeries(m.breakerState, { service });
  initSeries(m.concurrencyLimit, { service });
  initSeries(m.pacingPauses, { service });
  initSeries(m.breakerTransitions, { service, to: BREAKER_STATES });
}
