import { Registry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import { createDequeuerMetrics, initDequeuerMetrics } from '../../dequeuer/metrics.ts';
import { createEnqueuerMetrics, initEnqueuerMetrics } from '../../enqueuer/metrics.ts';
import { labelCombinations } from '../../shared/metrics.ts';

describe('metric series initialisation', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('builds the cartesian product of label values', () => {
    expect(labelCombinations({ service: ['a', 'b'], outcome: ['ok', 'ko'] })).toEqual([
      { service: 'a', outcome: 'ok' }, { service: 'a', outcome: 'ko' }, { service: 'b', outcome: 'ok' }, { service: 'b', outcome: 'ko' },
    ]);
    expect(labelCombinations({ service: [] as string[] })).toEqual([]);
  });

  it('exposes every counter an alert rates at 0 for each known label set before any traffic (enqueuer)', async () => {
    const registry = new Registry();
    const m = createEnqueuerMetrics(registry, { publishPending: () => 0, correlationInflight: () => 0 });
    initEnqueuerMetrics(m, ['echo', 'billing']);
    const text = await registry.metrics();
    for (const kind of ['sync', 'async']) {
      for (const outcome of ['confirmed', 'nacked', 'returned', 'timeout', 'closed', 'blocked']) {
        expect(text).toContain(`gw_publish_total{kind="${kind}",outcome="${outcome}"} 0`);
      }
    }
    for (const service of ['echo', 'billing']) {
      expect(text).toContain(`gw_reply_timeouts_total{service="${service}"} 0`);
      expect(text).toContain(`gw_jobs_accepted_total{service="${service}"} 0`);
      expect(text).toContain(`gw_jobs_replayed_total{service="${service}"} 0`);
      expect(text).toContain(`gw_sync_inflight{service="${service}"} 0`);
    }
    expect(text).toContain('gw_broker_reconnects_total{role="enqueuer"} 0');
  });

  it('exposes every counter an alert rates at 0 for each known label set before any traffic (dequeuer)', async () => {
    const registry = new Registry();
    const m = createDequeuerMetrics(registry);
    initDequeuerMetrics(m, ['echo']);
    const text = await registry.metrics();
    for (const outcome of ['success', 'client_error', 'server_error', 'timeout', 'network_error', 'breaker_open']) {
      expect(text).toContain(`gw_downstream_requests_total{service="echo",outcome="${outcome}"} 0`);
    }
    for (const reason of ['permanent', 'exhausted', 'undecodable']) expect(text).toContain(`gw_dead_letters_total{service="echo",reason="${reason}"} 0`);
    for (const to of ['closed', 'half-open', 'open']) expect(text).toContain(`gw_breaker_transitions_total{service="echo",to="${to}"} 0`);
    for (const name of ['gw_jobs_succeeded_total', 'gw_jobs_dead_total', 'gw_retries_total', 'gw_job_attempts_total', 'gw_messages_expired_total']) {
      expect(text).toContain(`${name}{service="echo"} 0`);
    }
    expect(text).toContain('gw_breaker_state{service="echo"} 0');
    expect(text).toContain('gw_queue_wait_seconds_count{service="echo",kind="work"} 0');
    expect(text).toContain('gw_downstream_duration_seconds_count{service="echo"} 0');
    for (const kind of ['retry', 'giveback', 'event']) expect(text).toContain(`gw_publish_total{kind="${kind}",outcome="nacked"} 0`);
    expect(text).toContain('gw_broker_connected{role="dequeuer-publish"} 0');
  });
});
