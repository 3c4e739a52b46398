import { existsSync } from 'node:fs';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { uniquePrefix } from '../support/broker.ts';

let node: PrivateNode;
const queue = `${uniquePrefix('private node')}.qq`;

async function withChannel<T>(fn: (conn: ChannelModel) => Promise<T>): Promise<T> {
  const conn = await connect(node.url);
  conn.on('error', () => undefined);
  try {
    return await fn(conn);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

async function publishConfirmed(body: string): Promise<void> {
  await withChannel(async (conn) => {
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    ch.sendToQueue(queue, Buffer.from(body), { persistent: true });
    await ch.waitForConfirms();
  });
}

async function getOne(): Promise<string | undefined> {
  return withChannel(async (conn) => {
    const ch = await conn.createChannel();
    const msg = await ch.get(queue, { noAck: true });
    return msg ? msg.content.toString('utf8') : undefined;
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  node = await startPrivateNode({ plugins: ['rabbitmq_management'], config: { heartbeat: 5 } });
});

afterAll(async () => {
  await node?.destroy();
});

beforeEach(() => {
  expect.hasAssertions();
});

describe('private RabbitMQ node', () => {
  it('boots on its own loopback ports with a quorum queue that takes and returns a message', async () => {
    expect(node.amqpPort).not.toBe(5672);
    expect(node.url).toBe(`amqp://guest:guest@127.0.0.1:${node.amqpPort}`);
    expect(isAlive(node.pid)).toBe(true);
    const flags = await node.rabbitmqctl(['list_feature_flags', 'name', 'state', '--quiet']);
    expect(flags).toMatch(/stream_queue\s+enabled/);
    expect(flags).toMatch(/quorum_queue\s+enabled/);
    await publishConfirmed('one');
    expect(await getOne()).toBe('one');
  });

  it('serves the management API on 127.0.0.1 when the plugin is enabled', async () => {
    expect(node.managementUrl).toBeDefined();
    const url = new URL('/api/overview', node.managementUrl);
    const auth = `Basic ${Buffer.from(`${url.username}:${url.password}`).toString('base64')}`;
    url.username = '';
    url.password = '';
    const res = await fetch(url, { headers: { authorization: auth } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { node: string }).node).toBe(node.nodeName);
  });

  it('keeps a durable quorum queue message across a graceful stop and start', async () => {
    await publishConfirmed('survives-stop');
    const oldPid = node.pid;
    await node.stop();
    expect(node.pid).toBe(0);
    expect(isAlive(oldPid)).toBe(false);
    await node.start();
    expect(node.pid).not.toBe(oldPid);
    expect(await getOne()).toBe('survives-stop');
  });

  it('starts again after kill -9 with confirmed messages intact', async () => {
    await publishConfirmed('survives-kill');
    const oldPid = node.pid;
    await node.kill();
    expect(isAlive(oldPid)).toBe(false);
    await node.start();
    expect(await getOne()).toBe('survives-kill');
  });

  it('freezes on pause and answers again on resume', async () => {
    node.pause();
    const attempt = connect(node.url, { timeout: 1_000 }).then((c) => c.close().then(() => 'connected'), () => 'failed');
    const frozen = await Promise.race([attempt, new Promise((r) => setTimeout(() => r('timeout'), 1_500))]);
    node.resume();
    expect(frozen).not.toBe('connected');
    await publishConfirmed('after-resume');
    expect(await getOne()).toBe('after-resume');
  });

  it('destroy kills the node, removes its dir and is idempotent', async () => {
    const { pid, dir } = node;
    await node.destroy();
    await node.destroy();
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    await expect(node.start()).rejects.toThrow(/destroyed/);
  });
});
