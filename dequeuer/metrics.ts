import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createCommonMetrics, type CommonMetrics } from '../shared/metrics.ts';

/** The dequeuer's metrics, declared together on an injected registry. */
export interface DequeuerMetrics extends CommonMetrics {
  consumed: Counter<'service' | 'kind'>;
  queueWait: Histogram<'service' | 'kind'>;
  downstreamRequests: Counter<'service' | 'outcome'>;
  downstreamDuration: Histogram<'service'>;
  expired: Counter<'service'>;
  attempts: Counter<'service'>;
  retries: Counter<'service'>;
  deadLetters: Counter<'service' | 'reason'>;
  succeeded: Counter<'service'>;
  dead: Counter<'service'>;
  breakerState: Gauge<'service'>;
  breakerTransitions: Counter<'service' | 'to'>;
  inflight: Gauge<'service' | 'kind'>;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export function createDequeuerMetrics(registry: Registry): DequeuerMetrics {
  const registers = [registry];
  return {
    ...createCommonMetrics(registry),
    consumed: new Counter({ name: 'gw_messages_consumed_total', help: 'Deliveries taken from work and rpc queues', labelNames: ['service', 'kind'], registers }),
    queueWait: new Histogram({ name: 'gw_queue_wait_seconds', help: 'Time from first publish to this delivery', labelNames: ['service', 'kind'], buckets: LATENCY_BUCKETS, registers }),
    downstreamRequests: new Counter({ name: 'gw_downstream_requests_total', help: 'Downstream calls by outcome', labelNames: ['service', 'outcome'], registers }),
    downstreamDuration: new Histogram({ name: 'gw_downstream_duration_seconds', help: 'Downstream call latency', labelNames: ['service'], buckets: LATENCY_BUCKETS, registers }),
    expired: new Counter({ name: 'gw_messages_expired_total', help: 'Deliveries skipped because their deadline had passed', labelNames: ['service'], registers }),
    attempts: new Counter({ name: 'gw_job_attempts_total', help: 'Job attempts started', labelNames: ['service'], registers }),
    retries: new Counter({ name: 'gw_retries_total', help: 'Retry copies confirmed into the delay levels', labelNames: ['service'], registers }),
    deadLetters: new Counter({ name: 'gw_dead_letters_total', help: 'Jobs sent to the DLQ', labelNames: ['service', 'reason'], registers }),
    succeeded: new Counter({ name: 'gw_jobs_succeeded_total', help: 'Jobs that ended with a downstream success', labelNames: ['service'], registers }),
    dead: new Counter({ name: 'gw_jobs_dead_total', help: 'Jobs that ended dead-lettered', labelNames: ['service'], registers }),
    breakerState: new Gauge({ name: 'gw_breaker_state', help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open', labelNames: ['service'], registers }),
    breakerTransitions: new Counter({ name: 'gw_breaker_transitions_total', help: 'Circuit breaker transitions', labelNames: ['service', 'to'], registers }),
    inflight: new Gauge({ name: 'gw_inflight', help: 'Deliveries being processed', labelNames: ['service', 'kind'], registers }),
  };
}
