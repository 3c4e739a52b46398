import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { jobLane } from '../../shared/topology/topology.ts';
import { conservation, runAcceptLoad } from '../support/accept-load.ts';
import { quorumLeader, startCluster } from '../support/cluster.ts';
import { Stack } from '../support/stack.ts';

const ACCEPT = 2_000;
const CLIENTS = 32;
const DOWN_MS = 10_000;

/**
 * RELIABILITY.md F9a, sized for CI: a 3-node cluster, the work queue a quorum queue with 3 members.
 * Both services get the nodes as a RABBITMQ_URL list starting at A (enqueuer A,B,C; dequeuer A,C,B),
 * so they declare the topology there and the queue's leader is A (`client-local` leader placement).
 * At 30% of the accepted jobs A is SIGKILLed — the work queue's leader and both services' node at
 * once — and restarted 10 s later.
 */
describe('cluster: the quorum leader node is killed while async jobs flow', () => {
  let nodes: PrivateNode[] = [];
  let stack: Stack;

  beforeAll(async () => {
    nodes = await startCluster(3, { config: { heartbeat: 5 } });
    const [a, b, c] = nodes.map((n) => n.url);
    stack = await Stack.start({ url: a!, prefix: 'gw', enqueuerEnv: { RABBITMQ_URL: `${a},${b},${c}` }, dequeuerEnv: { RABBITMQ_URL: `${a},${c},${b}` } });
  }, 240_000);
  afterAll(async () => {
    await stack?.stop(nodes.find((n) => n.pid)?.url ?? '').catch(() => {});
    await Promise.all(nodes.map((n) => n.destroy()));
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('loses no accepted job when the leader node dies, refuses only with fast 503s, the services carry on through the other nodes and the node rejoins', async () => {
    // The lane the load's jobs go to (tenant `default`, development mode).
    const workQueue = stack.topology.names.workQueue('echo', jobLane(stack.topology, { service: 'echo', tenant: 'default' }));
    const members = await nodes[0]!.rabbitmqctl(['list_queues', 'name', 'members', '--quiet', '--no-table-headers']);
    const line = members.split('\n').find((l) => l.startsWith(`${workQueue}\t`)) ?? '';
    for (const n of nodes) expect(line).toContain(n.nodeName); // 3 members: the queue survives one node

    expect(await quorumLeader(nodes[0]!, workQueue)).toBe(nodes[0]!.nodeName);
    const killed = nodes[0]!;
    let outage: Promise<void> | undefined;
    const killLeader = async (): Promise<void> => {
      await killed.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, DOWN_MS));
      await killed.start();
    };
    const load = await runAcceptLoad({
      baseUrl: stack.baseUrl, accept: ACCEPT, clients: CLIENTS, deadlineMs: 150_000,
      onAccepted: (n) => {
        if (!outage && n >= ACCEPT * 0.3) outage = killLeader();
      },
    });
    await outage;
    expect(load.accepted.size).toBeGreaterThanOrEqual(ACCEPT);

    const c = await conservation(stack.demo, load.accepted, 90_000);
    process.stderr.write(`[cluster] killed ${killed.nodeName}; ${JSON.stringify(c)}, statuses ${JSON.stringify(Object.fromEntries(load.statuses))}, slowest refusal ${load.slowestRefusalMs} ms\n`);
    expect(c.lost).toBe(0);
    expect(c.duplicates).toBeLessThanOrEqual(2 * (2 * 20 + 256));
    expect(c.unexpected).toBeLessThanOrEqual(CLIENTS);
    expect([...load.statuses.keys()].filter((s) => s !== 202 && s !== 503)).toEqual([]);
    expect(load.missingRetryAfter).toBe(0);
    expect(load.slowestRefusalMs).toBeLessThanOrEqual(5_500);
    expect(load.clientTimeouts).toBe(0);
    // Both services moved to the surviving nodes (and stay there): all eight connections are up
    // (enqueuer: publish, events, audit, DLQ consume and publish; dequeuer: publish, consume, cancellations).
    const conns = await nodes[1]!.rabbitmqctl(['list_connections', 'client_properties', '--quiet', '--no-table-headers']);
    expect(conns.match(/connection_name","(?:en|de)queuer/g)?.length).toBe(8);
    // The restarted node is back in the cluster without any manual step.
    const status = JSON.parse(await nodes.find((n) => n !== killed)!.rabbitmqctl(['cluster_status', '--formatter', 'json'])) as { running_nodes: string[] };
    expect(new Set(status.running_nodes)).toEqual(new Set(nodes.map((n) => n.nodeName)));
  }, 300_000);
});
