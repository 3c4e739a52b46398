import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** A fresh registry with the process's default metrics (event-loop lag, heap, GC …). */
export function createRegistry(labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  return registry;
}

/** Metrics both services export about their broker connections and their own health. */
export interface CommonMetrics {
  brokerConnected: Gauge<'role'>;
  brokerBlocked: Gauge<'role'>;
  brokerReconnects: Counter<'role'>;
  unhandledErrors: Counter;
}

export function createCommonMetrics(registry: Registry): CommonMetrics {
  return {
    brokerConnected: new Gauge({ name: 'gw_broker_connected', help: '1 while the AMQP connection of this role is up', labelNames: ['role'], registers: [registry] }),
    brokerBlocked: new Gauge({ name: 'gw_broker_blocked', help: '1 while the broker blocks this connection (resource alarm)', labelNames: ['role'], registers: [registry] }),
    brokerReconnects: new Counter({ name: 'gw_broker_reconnects_total', help: 'AMQP reconnect attempts', labelNames: ['role'], registers: [registry] }),
    unhandledErrors: new Counter({ name: 'gw_unhandled_errors_total', help: 'Errors that reached a process-level handler (must stay 0)', registers: [registry] }),
  };
}
