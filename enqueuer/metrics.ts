import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createCommonMetrics, initCommonMetrics, initSeries, type CommonMetrics } from '../shared/metrics.ts';

/** The enqueuer's metrics, declared together on an injected registry. */
export interface EnqueuerMetrics extends CommonMetrics {
  httpRequests: Counter<'route' | 'method' | 'status'>;
  httpDuration: Histogram<'route' | 'method' | 'status'>;
  publishPending: Gauge;
  correlationInflight: Gauge;
  idempotencyBytes: Gauge;
  jobStoreBytes: Gauge;
  replyTimeouts: Counter<'service'>;
  lateReplies: Counter;
  syncInflight: Gauge<'service'>;
  delayedJobs: Gauge<'service'>;
  delayedRefused: Counter<'service' | 'scope'>;
  /** Incremented by the async route once the broker confirmed a job (the conservation's inflow). */
  jobsAccepted: Counter<'service'>;
  /** Incremented by DLQ replay for each entry sent back to work (a second inflow of the conservation). */
  jobsReplayed: Counter<'service'>;
  authFailures: Counter<'reason'>;
  limited: Counter<'reason'>;
  /** Offset of the last events-stream message this replica applied. */
  eventsOffset: Gauge;
  /** How long after its oldest transition happened the last applied stream message was read (s): this replica's lag. */
  eventsLag: Gauge;
  /** The same per message: how long a transition takes to become visible here (batching, broker, reading). */
  eventsVisibility: Histogram;
  /** Transitions read from the events stream (÷ gw_jobs_accepted_total = events per job). */
  eventsRead: Counter;
  sseCatchUps: Counter<'outcome'>;
  sseCatchUpMessages: Counter;
}

/** Live values read at scrape time. */
export interface GaugeSources {
  publishPending: () => number;
  correlationInflight: () => number;
  /** Estimated bytes of the in-memory idempotency store (0 with Redis). */
  idempotencyBytes?: () => number;
  /** Estimated bytes of the in-memory job store (0 with Redis). */
  jobStoreBytes?: () => number;
  /** Delayed jobs not yet due per service (the shared count; async with Redis). */
  delayedJobs?: { services: readonly string[]; count: (service: string) => Promise<number> };
}

export function createEnqueuerMetrics(registry: Registry, sources: GaugeSources): EnqueuerMetrics {
  const registers = [registry];
  return {
    ...createCommonMetrics(registry),
    eventsOffset: new Gauge({ name: 'gw_events_stream_offset', help: 'Offset of the last events-stream message this replica applied', registers }),
    eventsLag: new Gauge({ name: 'gw_events_stream_lag_seconds', help: 'Time from the oldest transition of the last applied events-stream message to its apply on this replica (its lag behind the stream)', registers }),
    eventsVisibility: new Histogram({
      name: 'gw_events_visibility_seconds',
      help: 'Time from a batch\'s oldest transition to its apply on this replica (batching wait, broker, reading)',
      buckets: [0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1, 5],
      registers,
    }),
    eventsRead: new Counter({ name: 'gw_events_read_total', help: 'Job and breaker transitions read from the events stream', registers }),
    sseCatchUps: new Counter({ name: 'gw_sse_catchups_total', help: 'SSE resumes older than the replay log, read from the events stream (outcome: done = handed over to the live feed, gap = reset, ended = the response closed first, failed)', labelNames: ['outcome'], registers }),
    sseCatchUpMessages: new Counter({ name: 'gw_sse_catchup_messages_total', help: 'Events-stream messages read by SSE catch-ups', registers }),
    httpRequests: new Counter({ name: 'gw_http_requests_total', help: 'HTTP requests answered', labelNames: ['route', 'method', 'status'], registers }),
    httpDuration: new Histogram({
      name: 'gw_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    publishPending: new Gauge({
      name: 'gw_publish_pending',
      help: 'Publishes waiting for a broker confirm',
      registers,
      collect() {
        this.set(sources.publishPending());
      },
    }),
    correlationInflight: new Gauge({
      name: 'gw_reply_correlation_inflight',
      help: 'Sync requests waiting for a reply (correlation map size)',
      registers,
      collect() {
        this.set(sources.correlationInflight());
      },
    }),
    idempotencyBytes: new Gauge({
      name: 'gw_idempotency_store_bytes',
      help: 'Estimated bytes held by the in-memory idempotency store (stored answers; bounded by IDEMPOTENCY_MAX_BYTES; 0 with Redis)',
      registers,
      collect() {
        this.set(sources.idempotencyBytes?.() ?? 0);
      },
    }),
    jobStoreBytes: new Gauge({
      name: 'gw_job_store_bytes',
      help: 'Estimated bytes held by the in-memory job store (records and results; bounded by JOB_STORE_MAX_BYTES; 0 with Redis)',
      registers,
      collect() {
        this.set(sources.jobStoreBytes?.() ?? 0);
      },
    }),
    delayedJobs: new Gauge({
      name: 'gw_delayed_jobs',
      help: 'Delayed jobs accepted and not yet due, per service (the count the delayed-backlog bound applies to; shared by replicas with Redis)',
      labelNames: ['service'],
      registers,
      async collect() {
        const d = sources.delayedJobs;
        if (!d) return;
        for (const service of d.services) this.set({ service }, await d.count(service).catch(() => 0));
      },
    }),
    delayedRefused: new Counter({ name: 'gw_delayed_refused_total', help: 'Delayed jobs refused 503 because the delayed backlog was full (scope: service or tenant)', labelNames: ['service', 'scope'], registers }),
    replyTimeouts: new Counter({ name: 'gw_reply_timeouts_total', help: 'Sync requests answered 504 because no reply came within the wait', labelNames: ['service'], registers }),
    lateReplies: new Counter({ name: 'gw_replies_late_total', help: 'Replies that arrived after their request had ended', registers }),
    syncInflight: new Gauge({ name: 'gw_sync_inflight', help: 'Sync requests in flight', labelNames: ['service'], registers }),
    authFailures: new Counter({ name: 'gw_auth_failures_total', help: 'Requests refused for missing or invalid credentials (throttled = source IP over its failure budget)', labelNames: ['reason'], registers }),
    limited: new Counter({ name: 'gw_requests_limited_total', help: 'Requests refused by a quota: rate (429), inflight (429), forbidden (403)', labelNames: ['reason'], registers }),
    jobsAccepted: new Counter({ name: 'gw_jobs_accepted_total', help: 'Async jobs confirmed by the broker and answered 202', labelNames: ['service'], registers }),
    jobsReplayed: new Counter({ name: 'gw_jobs_replayed_total', help: 'Dead-lettered jobs replayed from the DLQ into the work queue (confirmed)', labelNames: ['service'], registers }),
  };
}

/** The enqueuer's connection role and what it publishes. */
export const ENQUEUER_ROLES = ['enqueuer'] as const;
export const ENQUEUER_PUBLISH_KINDS = ['sync', 'async', 'replay', 'event'] as const;

/** Creates every per-service series at 0 (see {@link initSeries}). */
export function initEnqueuerMetrics(metrics: EnqueuerMetrics, services: readonly string[]): void {
  initCommonMetrics(metrics, ENQUEUER_ROLES, ENQUEUER_PUBLISH_KINDS);
  for (const m of [metrics.replyTimeouts, metrics.jobsAccepted, metrics.jobsReplayed]) initSeries(m, { service: services });
  initSeries(metrics.syncInflight, { service: services });
  initSeries(metrics.delayedRefused, { service: services, scope: ['service', 'tenant'] });
}
