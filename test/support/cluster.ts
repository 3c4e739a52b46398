import { randomBytes } from 'node:crypto';
import { startPrivateNode, type PrivateNode, type PrivateNodeOptions } from '../../scripts/lib/rabbit-node.ts';

/**
 * A RabbitMQ cluster of private nodes on this host (same cookie; the others join the first), as
 * RabbitMQ's docs describe for a single machine. Destroy each node when done.
 */
export async function startCluster(size: number, options: Omit<PrivateNodeOptions, 'cookie' | 'name'> = {}): Promise<PrivateNode[]> {
  const cookie = randomBytes(16).toString('hex').toUpperCase();
  const nodes: PrivateNode[] = [];
  try {
    for (let i = 0; i < size; i++) nodes.push(await startPrivateNode({ ...options, cookie }));
    const [first, ...rest] = nodes;
    for (const node of rest) {
      await node.rabbitmqctl(['stop_app']);
      await node.rabbitmqctl(['reset']);
      await node.rabbitmqctl(['join_cluster', first!.nodeName]);
      await node.rabbitmqctl(['start_app']);
    }
    return nodes;
  } catch (err) {
    await Promise.all(nodes.map((n) => n.destroy()));
    throw err;
  }
}

/** The node that leads a quorum queue, asked of `via`. */
export async function quorumLeader(via: PrivateNode, queue: string): Promise<string | undefined> {
  const out = await via.rabbitmqctl(['list_queues', 'name', 'leader', '--quiet', '--no-table-headers']);
  for (const line of out.trim().split('\n')) {
    const [name, leader] = line.split('\t');
    if (name === queue) return leader?.trim();
  }
  return undefined;
}
