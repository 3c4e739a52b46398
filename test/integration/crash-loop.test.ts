import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { JobDriver, until } from '../support/jobs.ts';
import { Stack } from '../support/stack.ts';

const DELIVERY_LIMIT = 2;

/**
 * A job that kills its worker: a dequeuer child process is SIGKILLed while it holds the job (the
 * downstream hangs), restarted, killed again … The quorum queue's delivery limit must end the loop.
 */
describe('crash loop ends in the DLQ through the delivery limit', () => {
  const url = brokerUrl();
  let stack: Stack;
  let jobs: JobDriver;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    stack = await Stack.start({
      url,
      prefix: uniquePrefix('crash loop'),
      startDequeuer: false,
      // maxAttempts above the delivery limit, so the broker (not our own attempt check) ends the loop.
      services: { echo: { url: '{DEMO}', timeoutMs: 120_000, work: { deliveryLimit: DELIVERY_LIMIT }, retry: { maxAttempts: 20 } } },
    });
    jobs = await JobDriver.start(url, stack.topology);
  });
  afterAll(async () => {
    if (child?.pid && child.exitCode === null) child.kill('SIGKILL');
    await jobs?.close();
    await stack?.stop(url);
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  function startChild(): ChildProcess {
    const env = {
      PATH: process.env.PATH ?? '',
      RABBITMQ_URL: url,
      GW_PREFIX: stack.dequeuerConfig.prefix,
      SERVICES_JSON: JSON.stringify({ services: stack.dequeuerConfig.services }),
      PORT: '0',
      HOST: '127.0.0.1',
      HEARTBEAT_S: '5',
      LOG_LEVEL: 'warn',
    };
    return spawn(process.execPath, ['dequeuer/main.ts'], { env, stdio: 'ignore' });
  }

  it('a dequeuer SIGKILLed repeatedly while holding one job: the job lands in the DLQ with reason delivery_limit, not an endless loop, and its status says dead', async () => {
    const jobId = await jobs.publish('/delay/600000');
    const running = (): number => jobs.events.filter((e) => e.jobId === jobId && e.state === 'running').length;
    const dlq = stack.topology.names.deadLetterQueue('echo');
    let kills = 0;
    for (let round = 0; round < DELIVERY_LIMIT + 4; round++) {
      if ((await jobs.ch.checkQueue(dlq)).messageCount > 0) break;
      const before = running();
      child = startChild();
      const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
      // Held: the child emitted `running` and is waiting on the hanging downstream. Or the broker
      // dead-lettered it on delivery (limit reached) and the child never saw it.
      const held = await until(async () => running() > before || ((await jobs.ch.checkQueue(dlq)).messageCount > 0 && 'dead'), 30_000, 'job held or dead-lettered');
      process.kill(child.pid!, 'SIGKILL');
      kills++;
      await exited;
      if (held === 'dead') break;
    }
    const inDlq = await until(async () => (await jobs.ch.checkQueue(dlq)).messageCount === 1, 15_000, 'the job in the DLQ');
    expect(inDlq).toBe(true);
    expect(kills).toBeLessThanOrEqual(DELIVERY_LIMIT + 2);
    expect(running()).toBeLessThanOrEqual(DELIVERY_LIMIT + 1);
    expect((await jobs.ch.checkQueue(stack.topology.names.workQueue('echo'))).messageCount).toBe(0);
    // x-death, read by consuming (basic.get is refused on a single-active-consumer quorum queue).
    const conn = await connect(url);
    try {
      const reader = await conn.createChannel();
      const got = await new Promise<ConsumeMessage>((resolve) => {
        void reader.consume(dlq, (m) => {
          if (m) resolve(m);
        });
      });
      expect(got.properties.messageId).toBe(jobId);
      const death = (got.properties.headers?.['x-death'] as Array<{ reason: string; queue: string }>)[0];
      expect(death).toMatchObject({ reason: 'delivery_limit', queue: stack.topology.names.workQueue('echo') });
      // No worker lived to publish `dead`: the enqueuer derives it from the dead-lettered message.
      const status = async (): Promise<Record<string, unknown>> => (await fetch(`${stack.baseUrl}/v1/jobs/${jobId}`)).json() as Promise<Record<string, unknown>>;
      const dead = await until(async () => (await status()).state === 'dead', 10_000, 'the job dead in its status');
      expect(dead).toBe(true);
      expect(await status()).toMatchObject({ id: jobId, state: 'dead', attempts: 1 + DELIVERY_LIMIT, error: { code: 'GW_ERR_DELIVERY_LIMIT' } });
      process.stderr.write(`[crash-loop] kills ${kills}, attempts started ${running()}\n`);
    } finally {
      await conn.close();
    }
  });
});
