import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertCapabilities, parseVersion, requiredQueueTypes, type BrokerCapabilities } from '../../shared/amqp/capabilities.ts';
import { isGatewayError } from '../../shared/errors.ts';
import { managementGet } from '../../scripts/lib/management.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { testManagementUrl } from '../support/management.ts';
import { Stack } from '../support/stack.ts';

/** The broker capability probe each service runs once at start-up, on the test broker. */
describe('broker capability probe', () => {
  const url = brokerUrl();
  let stack: Stack;
  let server: { version: string; product: string };

  beforeAll(async () => {
    const management = await testManagementUrl();
    const env = { RABBITMQ_MANAGEMENT_URL: management };
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('capabilities'),
      services: { echo: { url: '{DEMO}', work: { deliveryLimit: 7 } } },
      enqueuerEnv: env,
      dequeuerEnv: env,
    });
    const conn = await connect(url);
    const props = (conn.connection as unknown as { serverProperties: Record<string, unknown> }).serverProperties;
    server = { version: String(props.version), product: String(props.product) };
    await conn.close();
  });
  afterAll(async () => {
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  function expectedFields(caps: BrokerCapabilities | undefined): void {
    const [major] = parseVersion(server.version);
    expect(caps).toBeDefined();
    expect(caps!.product).toBe(server.product);
    expect(caps!.version).toBe(server.version);
    // Quorum queues and streams (the topology declares both: work queues, the events stream) proven by probe queues.
    expect(caps!.queueTypesSource).toEqual({ quorum: 'declared', stream: 'declared' });
    expect(caps!.queueTypes).toEqual({ classic: true, quorum: true, stream: true });
    expect(caps!.queueTypeErrors).toEqual({});
    expect(caps!.featureFlags).toMatchObject({ quorum_queue: 'enabled', stream_queue: 'enabled' });
    expect(caps!.deliveryLimit).toEqual({
      // 20 for quorum queues without x-delivery-limit from RabbitMQ 4.0; unlimited before.
      brokerDefault: major >= 4 ? 20 : 'unlimited',
      effective: { [stack.topology.names.workQueue('echo')]: 7 },
    });
  }

  it('finds the version, feature flags, queue types and delivery limit, in /readyz of both services', async () => {
    const ready = (await (await fetch(`${stack.baseUrl}/readyz`)).json()) as { broker?: BrokerCapabilities };
    expectedFields(ready.broker);
    expectedFields(stack.dequeuer!.brokerCapabilities);
    const dq = (await (await fetch(`http://127.0.0.1:${stack.dequeuer!.port}/readyz`)).json()) as { broker?: BrokerCapabilities };
    expect(dq.broker).toEqual(stack.dequeuer!.brokerCapabilities);
    // The probe queues are gone again.
    const names = await managementGet<Array<{ name: string }>>(await testManagementUrl(), '/api/queues/%2F?columns=name');
    expect(names.filter((q) => q.name.startsWith(`${stack.topology.names.prefix}.probe.`))).toEqual([]);
  });

  it('logs it once per service and exposes it as gw_broker_info', async () => {
    const lines = stack.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('broker capabilities: '));
    expect(lines.map((l) => l.component)).toEqual(['enqueuer', 'dequeuer']);
    expect(lines[0]!.msg).toContain(`${server.product} ${server.version}, quorum yes, stream yes, delivery limit ${stack.topology.names.workQueue('echo')}=7`);
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    const [major] = parseVersion(server.version);
    expect(metrics).toContain(`gw_broker_info{product="${server.product}",version="${server.version}",quorum="true",stream="true",delivery_limit_default="${major >= 4 ? 20 : 'unlimited'}",app="enqueuer"} 1`);
  });

  it('refuses, with a clear typed error, a broker that lacks a queue type the topology declares', () => {
    const caps = stack.enqueuer.brokerCapabilities!;
    const lacking: BrokerCapabilities = { ...caps, queueTypes: { ...caps.queueTypes, quorum: false }, queueTypeErrors: { quorum: 'feature flag quorum_queue disabled' } };
    const required = requiredQueueTypes(stack.topology);
    expect([...required].sort()).toEqual(['classic', 'quorum', 'stream']);
    let err: unknown;
    try {
      assertCapabilities(lacking, required);
    } catch (e) {
      err = e;
    }
    expect(isGatewayError(err) && err.code).toBe('GW_ERR_BROKER_INCAPABLE');
    expect((err as Error).message).toBe(`${caps.product} ${caps.version} lacks quorum queues (feature flag quorum_queue disabled); ` +
      'the topology declares classic, quorum, stream queues. Quorum queues need RabbitMQ >= 3.8, streams >= 3.9, each with its feature flag enabled (rabbitmqctl enable_feature_flag all).');
    // What the broker has is not refused; a broker without streams is (the events stream needs them).
    expect(() => assertCapabilities(caps, required)).not.toThrow();
    expect(() => assertCapabilities({ ...caps, queueTypes: { ...caps.queueTypes, stream: false } }, required)).toThrow(/lacks stream queues/);
  });
});
