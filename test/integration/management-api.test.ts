import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { managementGet } from '../../scripts/lib/management.ts';
import { parseServices } from '../../shared/config/services.ts';
import { assertTopology } from '../../shared/topology/assert.ts';
import { toDefinitions, type Definitions } from '../../shared/topology/definitions.ts';
import { buildTopology, type Topology } from '../../shared/topology/topology.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { testManagementUrl } from '../support/management.ts';
import { deleteTopology } from '../support/stack.ts';

interface MgmtQueue { name: string; type: string; durable: boolean; auto_delete: boolean; arguments: Record<string, unknown> }
interface MgmtExchange { name: string; type: string; durable: boolean; auto_delete: boolean; internal: boolean; arguments: Record<string, unknown> }
interface MgmtBinding { source: string; destination: string; destination_type: string; routing_key: string }

const enc = encodeURIComponent;

/**
 * What an operator sees in the management UI after the services declared their topology: the same
 * names, arguments, dead-lettering and bindings as the definitions file the broker would import
 * (both come from shared/topology; rabbitmq/definitions.json is that output for prefix `gw`).
 */
describe('the topology through the management HTTP API', () => {
  const url = brokerUrl();
  let mgmt: string;
  let conn: ChannelModel;
  let topology: Topology;
  let defs: Definitions;

  beforeAll(async () => {
    mgmt = await testManagementUrl();
    const services = parseServices({ services: { echo: { url: 'http://127.0.0.1:1' }, 'pdf-render': { url: 'http://127.0.0.1:1', work: { deliveryLimit: 3, lanes: 2 } } } }, 'test');
    topology = buildTopology(services, { prefix: uniquePrefix('mgmt api') });
    defs = toDefinitions(topology);
    conn = await connect(url);
    await assertTopology(conn, topology);
  });
  afterAll(async () => {
    await conn?.close();
    if (topology) await deleteTopology(url, topology);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('shows every queue of the definitions with its type, durability and exact arguments', async () => {
    // 25 delay levels + unroutable + the events, cancellations and audit streams, and per service an
    // rpc queue, its lanes (4 + high, 2 + high) and a DLQ.
    expect(defs.queues.length).toBe(29 + (1 + 5 + 1) + (1 + 3 + 1));
    for (const q of defs.queues) {
      const seen = await managementGet<MgmtQueue>(mgmt, `/api/queues/${enc('/')}/${enc(q.name)}`);
      expect({ name: seen.name, durable: seen.durable, auto_delete: seen.auto_delete, arguments: seen.arguments }, q.name)
        .toEqual({ name: q.name, durable: q.durable, auto_delete: q.auto_delete, arguments: q.arguments });
      expect(seen.type, q.name).toBe(q.arguments['x-queue-type']);
    }
  });

  it('shows every work lane (normal ones and high) dead-lettering into its service\'s one DLQ through the DLX, with its delivery limit', async () => {
    const n = topology.names;
    expect(topology.lanes).toEqual({ echo: [0, 1, 2, 3, 'high'], 'pdf-render': [0, 1, 'high'] });
    for (const [svc, limit] of [['echo', undefined], ['pdf-render', 3]] as const) for (const lane of topology.lanes[svc]!) {
      const work = await managementGet<MgmtQueue>(mgmt, `/api/queues/${enc('/')}/${enc(n.workQueue(svc, lane))}`);
      expect(work.type).toBe('quorum');
      expect(work.arguments).toMatchObject({
        'x-dead-letter-exchange': n.deadLetterExchange,
        'x-dead-letter-routing-key': svc,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      });
      expect(work.arguments['x-delivery-limit']).toBe(defs.queues.find((q) => q.name === n.workQueue(svc, lane))!.arguments['x-delivery-limit']);
      // Reached from the work exchange by the lane's key, and from the end of the delay levels.
      const toLane = await managementGet<MgmtBinding[]>(mgmt, `/api/queues/${enc('/')}/${enc(n.workQueue(svc, lane))}/bindings`);
      expect(toLane.filter((b) => b.source !== '').map((b) => `${b.source} ${b.routing_key}`).sort())
        .toEqual([`${n.delayDeliverExchange} #.${n.workRoutingKey(svc, lane)}`, `${n.workExchange} ${n.workRoutingKey(svc, lane)}`].sort());
      if (limit !== undefined) expect(work.arguments['x-delivery-limit']).toBe(limit);
      const dlx = await managementGet<MgmtExchange>(mgmt, `/api/exchanges/${enc('/')}/${enc(n.deadLetterExchange)}`);
      expect(dlx).toMatchObject({ type: 'direct', durable: true, arguments: { 'alternate-exchange': n.unroutableExchange } });
      const fromDlx = await managementGet<MgmtBinding[]>(mgmt, `/api/exchanges/${enc('/')}/${enc(n.deadLetterExchange)}/bindings/source`);
      expect(fromDlx).toContainEqual(expect.objectContaining({ destination: n.deadLetterQueue(svc), destination_type: 'queue', routing_key: svc }));
      const dlq = await managementGet<MgmtQueue>(mgmt, `/api/queues/${enc('/')}/${enc(n.deadLetterQueue(svc))}`);
      expect(dlq.type).toBe('quorum');
    }
  });

  it('shows every exchange and exactly the bindings of the definitions between its objects', async () => {
    const ours = new Set([...defs.queues.map((q) => q.name), ...defs.exchanges.map((e) => e.name)]);
    const key = (b: MgmtBinding): string => `${b.source} -[${b.routing_key}]-> ${b.destination_type} ${b.destination}`;
    const seenBindings: string[] = [];
    for (const e of defs.exchanges) {
      const seen = await managementGet<MgmtExchange>(mgmt, `/api/exchanges/${enc('/')}/${enc(e.name)}`);
      expect({ type: seen.type, durable: seen.durable, auto_delete: seen.auto_delete, internal: seen.internal, arguments: seen.arguments }, e.name)
        .toEqual({ type: e.type, durable: e.durable, auto_delete: e.auto_delete, internal: e.internal, arguments: e.arguments });
      const bindings = await managementGet<MgmtBinding[]>(mgmt, `/api/exchanges/${enc('/')}/${enc(e.name)}/bindings/source`);
      seenBindings.push(...bindings.filter((b) => ours.has(b.destination)).map(key));
    }
    expect(seenBindings.sort()).toEqual(defs.bindings.map((b) => key(b)).sort());
    expect(seenBindings.length).toBeGreaterThan(50);
  });
});
