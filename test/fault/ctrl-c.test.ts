import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'amqplib';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { freePorts } from '../../scripts/lib/rabbit-node.ts';
import { parseServices } from '../../shared/config/services.ts';
import { buildTopology } from '../../shared/topology/topology.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/jobs.ts';
import { deleteTopology } from '../support/stack.ts';

const SYNC = 5;
const JOBS = 5;
const CALL_MS = 2000;

/**
 * Issue 15 (5): Ctrl-C on `npm start`. A terminal sends SIGINT to its whole foreground process
 * group; here the launcher runs in a group of its own and the test signals that group, twice, as
 * an impatient operator would. Before the fix the children shared the group, got SIGINT from the
 * terminal and SIGTERM from the launcher, took the second signal as "exit now": sync requests were
 * reset, the demo downstream exited first, and in-flight jobs ran again after the restart.
 */
describe('Ctrl-C on npm start drains', () => {
  const url = brokerUrl();
  const prefix = uniquePrefix('ctrl c');
  const dir = mkdtempSync(join(tmpdir(), 'gw-ctrl-c-'));
  const ledger = join(dir, 'ledger.jsonl');
  let launcher: ChildProcess | undefined;
  let output = '';
  let demoPort = 0;

  afterAll(async () => {
    if (launcher?.pid && launcher.exitCode === null) {
      try {
        process.kill(-launcher.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (demoPort) {
      const services = parseServices({ services: { echo: { url: `http://127.0.0.1:${demoPort}` } } });
      await deleteTopology(url, buildTopology(services, { prefix }));
    }
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it(`two Ctrl-Cs with ${SYNC} sync requests and ${JOBS} jobs in flight: every sync answered 200, every job called once and acked, children stop enqueuer → dequeuer → demo`, async () => {
    const [port, dequeuerPort, dp] = await freePorts(3);
    demoPort = dp!;
    launcher = spawn(process.execPath, ['scripts/start.ts'], {
      // Its own process group, like a job in a terminal: the group gets the Ctrl-C.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '',
        RABBITMQ_URL: url, GW_PREFIX: prefix, PORT: String(port), DEQUEUER_PORT: String(dequeuerPort), DEMO_PORT: String(demoPort),
        DEMO_LEDGER_FILE: ledger, LOG_LEVEL: 'warn', HOST: '127.0.0.1',
      },
    });
    launcher.stdout!.on('data', (b: Buffer) => (output += b.toString()));
    launcher.stderr!.on('data', (b: Buffer) => (output += b.toString()));
    const exited = new Promise<number | null>((resolve) => launcher!.once('exit', (code) => resolve(code)));
    const base = `http://127.0.0.1:${port}`;
    await until(() => output.includes('[start] ready'), 90_000, 'npm start ready');

    const sync = Array.from({ length: SYNC }, () =>
      fetch(`${base}/v1/services/echo/delay/${CALL_MS}`, { method: 'POST', body: 's', headers: { prefer: 'wait=20' } }).then(
        (r) => r.status,
        (err: Error) => `${(err.cause as { code?: string } | undefined)?.code ?? err.message}`,
      ));
    const jobIds: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const r = await fetch(`${base}/v1/services/echo/delay/${CALL_MS}`, { method: 'POST', body: 'j', headers: { prefer: 'respond-async' } });
      expect(r.status).toBe(202);
      jobIds.push(r.headers.get('x-gw-job-id')!);
    }
    // Let the calls reach the downstream, then Ctrl-C twice.
    await sleep(500);
    const ctrlCAt = Date.now();
    process.kill(-launcher.pid!, 'SIGINT');
    await sleep(300);
    process.kill(-launcher.pid!, 'SIGINT');

    const statuses = await Promise.all(sync);
    const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
    const stoppedMs = Date.now() - ctrlCAt;
    const calls = (existsSync(ledger) ? readFileSync(ledger, 'utf8') : '').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key?: string; status: number; path: string });
    const perJob = jobIds.map((id) => calls.filter((c) => c.key === id).length);
    const amqp = await connect(url);
    const ch = await amqp.createChannel();
    const left = (await ch.checkQueue(`${prefix}.echo.work`).catch(() => ({ messageCount: -1 }))).messageCount;
    await amqp.close();
    const order = [...output.matchAll(/\[start\] (\w+) exited \((\w+)\)/g)].map((m) => `${m[1]}:${m[2]}`);
    process.stderr.write(`[ctrl-c] sync answers ${JSON.stringify(statuses)}; calls per job ${JSON.stringify(perJob)}; jobs left in the queue ${left}; exit order ${order.join(' ')}; launcher exit ${code} after ${stoppedMs} ms\n`);

    expect(statuses).toEqual(Array.from({ length: SYNC }, () => 200));
    expect(perJob).toEqual(Array.from({ length: JOBS }, () => 1));
    for (const id of jobIds) expect(calls.find((c) => c.key === id)?.status).toBe(200);
    // Acked before the dequeuer stopped: nothing would run again after a restart.
    expect(left).toBe(0);
    expect(order).toEqual(['enqueuer:0', 'dequeuer:0', 'demo:0']);
    expect(code).toBe(0);
    expect(output).toContain('already stopping');
  });
});
