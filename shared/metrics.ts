import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PUBLISH_OUTCOMES, type PublishKind } from './amqp/confirm-publisher.ts';

/**
 * prom-client default gauges named like counters (`promtool check metrics` rejects a gauge ending in
 * `_total`); each is the sum of a per-type gauge that stays (`nodejs_active_handles{type}` …).
 */
export const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

/** A fresh registry with the process's default metrics (event-loop lag, heap, GC …). */
export function createRegistry(labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  return registry;
}

/** Metrics both services export about their broker connections, publishes and own health. */
export interface CommonMetrics {
  brokerConnected: Gauge<'role'>;
  brokerBlocked: Gauge<'role'>;
  brokerReconnects: Counter<'role'>;
  publishes: Counter<'kind' | 'outcome'>;
  unhandledErrors: Counter;
  brokerInfo: Gauge<'product' | 'version' | 'quorum' | 'stream' | 'delivery_limit_default'>;
  /** Transitions per v2 batch this process published to the events stream. */
  eventBatchSize: Histogram;
  /** How long the oldest transition of each batch waited in the batcher (s): what batching adds to visibility. */
  eventBatchWait: Histogram;
}

export function createCommonMetrics(registry: Registry): CommonMetrics {
  return {
    brokerConnected: new Gauge({ name: 'gw_broker_connected', help: '1 while the AMQP connection of this role is up', labelNames: ['role'], registers: [registry] }),
    brokerBlocked: new Gauge({ name: 'gw_broker_blocked', help: '1 while the broker blocks this connection (resource alarm)', labelNames: ['role'], registers: [registry] }),
    brokerReconnects: new Counter({ name: 'gw_broker_reconnects_total', help: 'AMQP reconnect attempts', labelNames: ['role'], registers: [registry] }),
    publishes: new Counter({ name: 'gw_publish_total', help: 'Confirmed publishes by kind and outcome (confirmed is the only success)', labelNames: ['kind', 'outcome'], registers: [registry] }),
    unhandledErrors: new Counter({ name: 'gw_unhandled_errors_total', help: 'Errors that reached a process-level handler (must stay 0)', registers: [registry] }),
    brokerInfo: new Gauge({
      name: 'gw_broker_info',
      help: 'The broker as probed at start-up (always 1): version, queue types available, default quorum delivery limit',
      labelNames: ['product', 'version', 'quorum', 'stream', 'delivery_limit_default'],
      registers: [registry],
    }),
    eventBatchSize: new Histogram({
      name: 'gw_event_batch_size',
      help: 'Transitions per batch this process published to the events stream (one stream message each)',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers: [registry],
    }),
    eventBatchWait: new Histogram({
      name: 'gw_event_batch_wait_seconds',
      help: 'How long the oldest transition of each published batch waited in the batcher',
      buckets: [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
  };
}

type LabelSet<K extends string> = Record<K, string>;

/**
 * Every combination of the given label values (a cartesian product), e.g.
 * `{ service: ['a', 'b'], outcome: ['ok'] }` → `[{service:'a',outcome:'ok'}, {service:'b',outcome:'ok'}]`.
 */
export function labelCombinations<K extends string>(values: Record<K, readonly string[]>): Array<LabelSet<K>> {
  let out: Array<Record<string, string>> = [{}];
  for (const [name, list] of Object.entries(values) as Array<[string, readonly string[]]>) {
    out = out.flatMap((partial) => list.map((v) => ({ ...partial, [name]: v })));
  }
  return out as Array<LabelSet<K>>;
}

/**
 * Creates the series of every known label set at value 0, so `rate()`/`increase()` see the first
 * event (a series that appears with value 1 has no earlier sample to grow from) and dashboards
 * show 0 rather than "no data".
 */
export function initSeries<K extends string>(metric: Counter<K> | Gauge<K> | Histogram<K>, values: Record<K, readonly string[]>): void {
  for (const labels of labelCombinations(values)) {
    if (metric instanceof Histogram) metric.zero(labels);
    else if (metric instanceof Gauge) metric.set(labels, 0);
    else metric.inc(labels, 0);
  }
}

/** Zero series of the common metrics for this process's connection roles and publish kinds. */
export function initCommonMetrics(metrics: CommonMetrics, roles: readonly string[], kinds: readonly PublishKind[]): void {
  initSeries(metrics.brokerConnected, { role: roles });
  initSeries(metrics.brokerBlocked, { role: roles });
  initSeries(metrics.brokerReconnects, { role: roles });
  initSeries(metrics.publishes, { kind: kinds, outcome: PUBLISH_OUTCOMES });
}
