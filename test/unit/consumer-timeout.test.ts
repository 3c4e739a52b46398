import { describe, expect, it } from 'vitest';
import { loadDequeuerConfig } from '../../dequeuer/config.ts';
import {
  assertConsumerTimeouts, brokerVhost, deliveryHold, describeFinding, judgeConsumerTimeout, queueConsumerTimeout, serviceConsumerTimeout,
} from '../../dequeuer/consumer-timeout.ts';
import { COPY_RETRY_MS } from '../../dequeuer/work-handler.ts';
import { serviceSchema } from '../../shared/config/services.ts';
import { isGatewayError } from '../../shared/errors.ts';

const configured = { ms: 120_000, source: 'BROKER_CONSUMER_TIMEOUT_MS' };
/** A service's settings with the schema's defaults (pacing maxPauseMs 60 s, floor 1, 4 lanes, prefetch 20). */
const svc = (timeoutMs: number, work: Record<string, unknown> = {}) => serviceSchema.parse({ url: 'http://127.0.0.1:1', timeoutMs, work });

/** The start-up decision against the broker's consumer (ack) timeout (plan F8, issue 15). */
describe('consumer timeout check', () => {
  it('adds the Retry-After pause, the downstream timeout and the retry-copy publishing to the longest hold of a delivery', () => {
    expect(COPY_RETRY_MS).toBe(10_000);
    expect(deliveryHold('echo', svc(25_000), 5_000)).toEqual({
      service: 'echo', pauseMs: 60_000, downstreamTimeoutMs: 25_000, copyPublishMs: 15_000, holdMs: 100_000,
      // 5 lanes (4 + high) × prefetch 20, started one at a time at the pacing floor.
      heldDeliveries: 100, queuedWorstMs: 60_000 + 100 * 25_000 + 15_000,
    });
    expect(deliveryHold('echo', svc(1_000, { lanes: 1, prefetch: 10, pacing: { floor: 5, maxPauseMs: 0 } }), 5_000)).toMatchObject({ holdMs: 16_000, heldDeliveries: 20, queuedWorstMs: 4 * 1_000 + 15_000 });
  });

  it('refuses a hold that reaches the consumer timeout, warns above half of it, passes the rest', () => {
    const verdict = (timeoutMs: number): string => judgeConsumerTimeout(deliveryHold('echo', svc(timeoutMs), 5_000), configured).verdict;
    // hold = timeoutMs + 75 000 against 120 000
    expect(verdict(45_000)).toBe('refuse'); // hold 120 000 = the timeout
    expect(verdict(180_000)).toBe('refuse'); // the F8 misconfiguration: the downstream timeout alone is above it
    expect(verdict(44_999)).toBe('warn');
    expect(verdict(1)).toBe('warn'); // hold 75 001 > half
    expect(judgeConsumerTimeout(deliveryHold('echo', svc(1, { pacing: { maxPauseMs: 44_999 } }), 0), configured).verdict).toBe('ok'); // hold 55 000
  });

  it('warns, without refusing, when a full backlog at the pacing floor can outlast the timeout', () => {
    const f = judgeConsumerTimeout(deliveryHold('echo', svc(10_000), 5_000), { ms: 1_000_000, source: 'BROKER_CONSUMER_TIMEOUT_MS' });
    expect(f).toMatchObject({ verdict: 'ok', queuedWorstMs: 1_075_000, queued: 'warn' });
    expect(judgeConsumerTimeout(deliveryHold('echo', svc(10_000, { pacing: { floor: 2 } }), 5_000), { ms: 1_000_000, source: 'x' }).queued).toBe('ok');
  });

  it('passes the defaults: 10 s downstream timeout against 30 min, backlog included', () => {
    const config = loadDequeuerConfig({ RABBITMQ_URL: 'amqp://127.0.0.1', SERVICES_JSON: JSON.stringify({ services: { echo: { url: 'http://127.0.0.1:1' } } }) });
    expect(config.brokerConsumerTimeoutMs).toBe(1_800_000);
    const f = judgeConsumerTimeout(deliveryHold('echo', config.services.echo!, config.publishTimeoutMs), { ms: config.brokerConsumerTimeoutMs, source: 'BROKER_CONSUMER_TIMEOUT_MS' });
    expect(f).toMatchObject({ holdMs: 85_000, verdict: 'ok', queuedWorstMs: 1_075_000, queued: 'ok' });
    expect(() => loadDequeuerConfig({ RABBITMQ_URL: 'amqp://127.0.0.1', BROKER_CONSUMER_TIMEOUT_MS: '999', SERVICES_JSON: JSON.stringify({ services: { echo: { url: 'http://127.0.0.1:1' } } }) })).toThrow(/BROKER_CONSUMER_TIMEOUT_MS/);
  });

  it('throws GW_ERR_CONSUMER_TIMEOUT_UNSAFE naming each refused service, its figures and where the timeout came from', () => {
    const findings = [
      judgeConsumerTimeout(deliveryHold('slow', svc(180_000), 5_000), configured),
      judgeConsumerTimeout(deliveryHold('edge', svc(40_000), 5_000), configured),
      judgeConsumerTimeout(deliveryHold('echo', svc(1_000, { pacing: { maxPauseMs: 0 } }), 5_000), { ms: 120_000, source: 'broker: gw.echo.work policy consumer-timeout' }),
    ];
    expect(findings.map((f) => f.verdict)).toEqual(['refuse', 'warn', 'ok']);
    let err: unknown;
    try {
      assertConsumerTimeouts(findings);
    } catch (e) {
      err = e;
    }
    expect(isGatewayError(err) && err.code).toBe('GW_ERR_CONSUMER_TIMEOUT_UNSAFE');
    expect((err as Error).message).toBe('slow: holds a delivery up to 255000 ms (Retry-After pause 60000 + downstream timeoutMs 180000 + copy publish 15000) against a consumer timeout of 120000 ms (BROKER_CONSUMER_TIMEOUT_MS). ' +
      "The broker would close the channel (406 PRECONDITION_FAILED) and redeliver its unacked deliveries; lower the service's timeoutMs or work.pacing.maxPauseMs, or raise the broker's consumer_timeout (and BROKER_CONSUMER_TIMEOUT_MS to match)");
    expect(() => assertConsumerTimeouts(findings.slice(1))).not.toThrow();
    expect(describeFinding(findings[2]!)).toContain('(broker: gw.echo.work policy consumer-timeout)');
  });

  it("reads a queue's own consumer timeout from the management API's view: argument first, then the effective policy", () => {
    expect(queueConsumerTimeout({ name: 'q', arguments: { 'x-consumer-timeout': 7_000 }, effective_policy_definition: { 'consumer-timeout': 9_000 } })).toEqual({ ms: 7_000, source: 'broker: q x-consumer-timeout' });
    expect(queueConsumerTimeout({ name: 'q', arguments: {}, effective_policy_definition: { 'consumer-timeout': 9_000 } })).toEqual({ ms: 9_000, source: 'broker: q policy consumer-timeout' });
    // RabbitMQ shows an empty policy as [] (3.10) or {}.
    expect(queueConsumerTimeout({ name: 'q', arguments: { 'x-queue-type': 'quorum' }, effective_policy_definition: [] })).toBeUndefined();
    expect(queueConsumerTimeout({ name: 'q', arguments: {}, effective_policy_definition: {} })).toBeUndefined();
    expect(queueConsumerTimeout({ name: 'q' })).toBeUndefined();
  });

  it("takes a service's smallest queue timeout, the configured one for queues without their own", () => {
    const broker = new Map([['gw.echo.work', { ms: 20_000, source: 'broker: gw.echo.work x-consumer-timeout' }], ['gw.big.work', { ms: 600_000, source: 'broker: gw.big.work x-consumer-timeout' }]]);
    expect(serviceConsumerTimeout(['gw.echo.rpc', 'gw.echo.work'], broker, configured)).toEqual(broker.get('gw.echo.work'));
    // The rpc queue still has the node-wide timeout, which is smaller.
    expect(serviceConsumerTimeout(['gw.big.rpc', 'gw.big.work'], broker, configured)).toEqual(configured);
    expect(serviceConsumerTimeout(['gw.other.rpc'], broker, configured)).toEqual(configured);
  });

  it('finds the virtual host of the first broker URL', () => {
    expect(brokerVhost('amqp://u:p@127.0.0.1:5672')).toBe('/');
    expect(brokerVhost('amqp://u:p@127.0.0.1:5672/')).toBe('/');
    expect(brokerVhost('amqp://127.0.0.1/%2F')).toBe('/');
    expect(brokerVhost('amqps://a:5671/prod,amqps://b:5671/prod')).toBe('prod');
  });
});
