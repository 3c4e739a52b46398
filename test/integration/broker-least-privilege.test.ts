import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RABBITMQCTL_BIN, startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { Stack } from '../support/stack.ts';

const run = promisify(execFile);
const pw = { enqueuer: randomBytes(12).toString('hex'), dequeuer: randomBytes(12).toString('hex') };

/** Runs `op` on a fresh channel and resolves the AMQP reply code of the channel error it causes (0 = none). */
async function channelError(conn: ChannelModel, op: (ch: ConfirmChannel) => Promise<unknown>): Promise<number> {
  const ch = await conn.createConfirmChannel();
  let code = 0;
  const closed = new Promise<void>((r) => ch.once('close', () => r()));
  ch.on('error', (err: { code?: number }) => {
    code = err.code ?? -1;
  });
  try {
    await op(ch);
    await ch.waitForConfirms();
  } catch (err) {
    code ||= (err as { code?: number }).code ?? -1;
  }
  if (code) await closed;
  else await ch.close();
  return code;
}

describe('RabbitMQ least privilege (private node with the generated definitions)', () => {
  let node: PrivateNode;
  let enq: ChannelModel;
  let deq: ChannelModel;
  let stack: Stack;
  const as = (user: string, password: string) => node.url.replace('guest:guest', `${user}:${password}`);

  beforeAll(async () => {
    node = await startPrivateNode();
    await node.rabbitmqctl(['import_definitions', resolve('rabbitmq/definitions.json')]);
    await run('sh', ['scripts/set-broker-passwords.sh'], {
      env: { ...process.env, HOME: node.dir, RABBITMQCTL: RABBITMQCTL_BIN, RABBITMQ_NODE: node.nodeName, GW_ENQUEUER_PASSWORD: pw.enqueuer, GW_DEQUEUER_PASSWORD: pw.dequeuer },
    });
    enq = await connect(as('gw-enqueuer', pw.enqueuer));
    deq = await connect(as('gw-dequeuer', pw.dequeuer));
    for (const c of [enq, deq]) c.on('error', () => undefined);
  });
  afterAll(async () => {
    await stack?.stop(node.url).catch(() => undefined);
    await enq?.close().catch(() => undefined);
    await deq?.close().catch(() => undefined);
    await node?.destroy();
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('runs the pair end to end with the per-service users and TOPOLOGY_MODE=passive', async () => {
    const env = (user: string, password: string) => ({ RABBITMQ_URL: as(user, password), TOPOLOGY_MODE: 'passive' });
    stack = await Stack.start({ url: node.url, prefix: 'gw', enqueuerEnv: env('gw-enqueuer', pw.enqueuer), dequeuerEnv: env('gw-dequeuer', pw.dequeuer) });
    const res = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'least privilege' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('least privilege');
  });

  it('refuses the enqueuer user to consume or delete work queues, declare queues, publish elsewhere or set user-id (real 403/406 channel errors)', async () => {
    expect(await channelError(enq, (ch) => ch.consume('gw.echo.work', () => undefined))).toBe(403);
    expect(await channelError(enq, (ch) => ch.consume('gw.echo.work.1', () => undefined))).toBe(403);
    expect(await channelError(enq, (ch) => ch.consume('gw.echo.work.high', () => undefined))).toBe(403);
    expect(await channelError(enq, (ch) => ch.consume('gw.echo.rpc', () => undefined))).toBe(403);
    expect(await channelError(enq, (ch) => ch.deleteQueue('gw.echo.work'))).toBe(403);
    expect(await channelError(enq, (ch) => ch.purgeQueue('gw.echo.rpc'))).toBe(403);
    expect(await channelError(enq, (ch) => ch.assertQueue('gw.evil', { durable: true }))).toBe(403);
    // gw.dlx is writable (DLQ rotation goes through it); the inner delay levels and the deliver exchange are not.
    expect(await channelError(enq, async (ch) => ch.publish('gw.delay.L03', 'x', Buffer.from('x')))).toBe(403);
    expect(await channelError(enq, async (ch) => ch.publish('gw.delay.deliver', 'work.echo', Buffer.from('x')))).toBe(403);
    expect(await channelError(enq, async (ch) => ch.publish('', 'gw.echo.work', Buffer.from('x')))).toBe(403);
    expect(await channelError(enq, async (ch) => ch.publish('gw.work', 'rpc.echo', Buffer.from('x'), { userId: 'gw-admin' }))).toBe(406);
  });

  it('lets the enqueuer user publish to the work exchange and use direct reply-to', async () => {
    expect(await channelError(enq, async (ch) => {
      await ch.consume('amq.rabbitmq.reply-to', () => undefined, { noAck: true });
      ch.publish('gw.work', 'rpc.nobody', Buffer.from('x'), { replyTo: 'amq.rabbitmq.reply-to', expiration: '1' });
    })).toBe(0);
  });

  it('lets the dequeuer user consume its queues and nothing else, and refuses logins without a password', async () => {
    for (const lane of ['gw.echo.work', 'gw.echo.work.1', 'gw.echo.work.3', 'gw.echo.work.high']) {
      expect(await channelError(deq, (ch) => ch.consume(lane, () => undefined).then((c) => ch.cancel(c.consumerTag))), lane).toBe(0);
    }
    expect(await channelError(deq, (ch) => ch.consume('gw.echo.dlq', () => undefined))).toBe(403);
    expect(await channelError(deq, (ch) => ch.deleteQueue('gw.echo.dlq'))).toBe(403);
    expect(await channelError(deq, async (ch) => ch.publish('gw.dlx', 'echo', Buffer.from('x')))).toBe(403);
    await expect(connect(as('gw-monitor', ''))).rejects.toThrow(/ACCESS_REFUSED|403|auth/i);
    await expect(connect(as('gw-admin', 'guess'))).rejects.toThrow(/ACCESS_REFUSED|403|auth/i);
  });
});

