import { spawn } from 'node:child_process';
import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertCapabilities, parseVersion, requiredQueueTypes, type BrokerCapabilities } from '../../shared/amqp/capabilities.ts';
import { isGatewayError } from '../../shared/errors.ts';
import { managementGet } from '../../scripts/lib/management.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { testManagementUrl } from '../support/management.ts';
import { parseServices } from '../../shared/config/services.ts';
import { buildTopology } from '../../shared/topology/topology.ts';
import { deleteTopology, Stack } from '../support/stack.ts';

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
    // The consumer-timeout check passed the defaults (10 s downstream timeout against 30 min); the
    // management API was read and showed no queue with its own timeout, so the configured one counted.
    const ct = (dq as { consumerTimeout?: unknown }).consumerTimeout;
    expect(ct).toEqual([{
      service: 'echo', pauseMs: 60_000, downstreamTimeoutMs: 10_000, copyPublishMs: 15_000, holdMs: 85_000, heldDeliveries: 100, queuedWorstMs: 1_075_000,
      consumerTimeoutMs: 1_800_000, source: 'BROKER_CONSUMER_TIMEOUT_MS', verdict: 'ok', queued: 'ok',
    }]);
    expect(stack.logs.lines.filter((l) => l.msg === 'consumer timeout check: BROKER_CONSUMER_TIMEOUT_MS used (no queue has its own consumer timeout (the node-wide one is not visible))')).toHaveLength(1);
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

  it('a dequeuer whose service can hold a delivery past the consumer timeout refuses to start: GW_ERR_CONSUMER_TIMEOUT_UNSAFE, exit 78', async () => {
    // 60 s Retry-After pause + timeoutMs 20 s + 10 s copy retry + 5 s publish timeout = 95 s against
    // 90 s: refused. `echo` (10 s → 85 s) is above half, and its backlog at the pacing floor can
    // outlast the timeout: two warnings. Management API set: the queues' own values are looked for.
    const prefix = uniquePrefix('consumer-timeout');
    const services = { services: { slow: { url: 'http://127.0.0.1:9', timeoutMs: 20_000 }, echo: { url: 'http://127.0.0.1:9' } } };
    const env = {
      PATH: process.env.PATH, RABBITMQ_URL: url, GW_PREFIX: prefix, SERVICES_JSON: JSON.stringify(services), PORT: '0', HOST: '127.0.0.1',
      LOG_LEVEL: 'info', BROKER_CONSUMER_TIMEOUT_MS: '90000', RABBITMQ_MANAGEMENT_URL: await testManagementUrl(),
    };
    const t0 = Date.now();
    const child = spawn(process.execPath, ['dequeuer/main.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    try {
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`dequeuer still running after 20 s:\n${stdout}\n${stderr}`)), 20_000);
        child.once('exit', (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      expect(code).toBe(78);
      expect(Date.now() - t0).toBeLessThan(20_000);
      expect(stderr).toContain('dequeuer: refusing to start: GW_ERR_CONSUMER_TIMEOUT_UNSAFE: slow: holds a delivery up to 95000 ms ' +
        '(Retry-After pause 60000 + downstream timeoutMs 20000 + copy publish 15000) against a consumer timeout of 90000 ms (BROKER_CONSUMER_TIMEOUT_MS).');
      expect(stderr).not.toContain('echo:');
      const logs = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; msg: string });
      expect(logs.find((l) => l.msg.startsWith('consumer timeout check: '))?.msg)
        .toBe('consumer timeout check: BROKER_CONSUMER_TIMEOUT_MS used (no queue has its own consumer timeout (the node-wide one is not visible))');
      expect(logs.filter((l) => l.level === 'warn' && l.msg.startsWith('consumer timeout: ')).map((l) => l.msg)).toEqual([
        'consumer timeout: echo: holds a delivery up to 85000 ms (Retry-After pause 60000 + downstream timeoutMs 10000 + copy publish 15000) against a consumer timeout of 90000 ms ' +
        '(BROKER_CONSUMER_TIMEOUT_MS), above half of it: a slow downstream leaves little margin before the broker closes the channel',
        'consumer timeout: echo: the last of 100 held deliveries can wait up to 1075000 ms at the pacing floor (every call taking timeoutMs 10000), not less than the consumer timeout ' +
        'of 90000 ms (BROKER_CONSUMER_TIMEOUT_MS): raise work.pacing.floor or lower work.prefetch, work.lanes or timeoutMs',
      ]);
      // Nothing consumed: no consumer ever attached to the refused dequeuer's queues.
      const queues = await managementGet<Array<{ name: string; consumers?: number }>>(await testManagementUrl(), '/api/queues/%2F?columns=name,consumers');
      expect(queues.filter((q) => q.name.startsWith(`${prefix}.`) && (q.consumers ?? 0) > 0)).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await deleteTopology(url, buildTopology(parseServices(services, 'test'), { prefix }));
    }
  });
});
