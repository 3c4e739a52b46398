import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePorts, startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { encodeRequest, type RequestEnvelope } from '../../shared/envelope.ts';
import { shortenAlertmanagerConfig, shortenAlertRules } from '../support/alerting-config.ts';
import { startAlertmanager, startPrometheus, waitForHttp, type ToolProcess } from '../support/monitoring-processes.ts';
import { Stack } from '../support/stack.ts';

/**
 * The alerts of monitoring/alerts.yml reach a real Alertmanager: real Prometheus scrapes the
 * running enqueuer + dequeuer and a PRIVATE RabbitMQ node's rabbitmq_prometheus endpoint (the
 * shared broker has no such plugin). The rule file is alerts.yml with `for:` capped at 2 s and
 * range selectors at 10 s (test/support/alerting-config.ts); the pair runs with the default prefix
 * `gw` on that private node, so the rules' queue selectors apply unchanged.
 */
const FIRE_WITHIN_MS = 40_000;
const RESOLVE_WITHIN_MS = 45_000;
const root = new URL('../../', import.meta.url);

interface AmAlert {
  labels: Record<string, string>;
  status: { state: string };
}

describe('alerts arrive at Alertmanager end to end and resolve after recovery', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-alerting-'));
  const webhooks: Array<{ path: string; status: string; alertnames: string[] }> = [];
  let node: PrivateNode;
  let stack: Stack;
  let prometheus: ToolProcess;
  let alertmanager: ToolProcess;
  let receiver: Server;
  let conn: ChannelModel;
  let ch: ConfirmChannel;

  beforeAll(async () => {
    node = await startPrivateNode({
      plugins: ['rabbitmq_management', 'rabbitmq_prometheus'],
      config: { 'prometheus.return_per_object_metrics': 'true', collect_statistics_interval: 1000 },
    });
    stack = await Stack.start({
      url: node.url,
      prefix: 'gw',
      services: {
        echo: {
          url: '{DEMO}', timeoutMs: 2000, retry: { maxAttempts: 1 },
          breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 3000, rollingWindowMs: 10_000 },
        },
      },
    });
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const msg = JSON.parse(body) as { status: string; alerts: AmAlert[] };
        webhooks.push({ path: req.url ?? '', status: msg.status, alertnames: msg.alerts.map((a) => a.labels.alertname!) });
        res.end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const [promPort, amPort] = await freePorts(2);
    const receiverPort = (receiver.address() as { port: number }).port;

    writeFileSync(join(dir, 'alerts.yml'), shortenAlertRules(readFileSync(new URL('monitoring/alerts.yml', root), 'utf8'), { forS: 2, rangeS: 10 }));
    writeFileSync(join(dir, 'alertmanager.yml'), shortenAlertmanagerConfig(readFileSync(new URL('monitoring/alertmanager.yml', root), 'utf8'), 1, `http://127.0.0.1:${receiverPort}`));
    const target = (port: number) => [{ targets: [`127.0.0.1:${port}`] }];
    writeFileSync(join(dir, 'prometheus.yml'), stringify({
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: ['alerts.yml'],
      alerting: { alertmanagers: [{ static_configs: [{ targets: [`127.0.0.1:${amPort}`] }] }] },
      scrape_configs: [
        { job_name: 'enqueuer', static_configs: target(stack.enqueuer.port) },
        { job_name: 'dequeuer', static_configs: target(stack.dequeuer!.port) },
        { job_name: 'rabbitmq', static_configs: target(node.prometheusPort!) },
      ],
    }));
    alertmanager = startAlertmanager(dir, join(dir, 'alertmanager.yml'), amPort!);
    prometheus = startPrometheus(dir, join(dir, 'prometheus.yml'), promPort!);
    await waitForHttp(`${alertmanager.url}/-/ready`, 20_000);
    await waitForHttp(`${prometheus.url}/-/ready`, 20_000);
    conn = await connect(node.url);
    ch = await conn.createConfirmChannel();
  });

  afterAll(async () => {
    await conn?.close().catch(() => undefined);
    await prometheus?.stop();
    await alertmanager?.stop();
    await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
    await stack?.stop(node.url);
    await node?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  async function amAlerts(): Promise<AmAlert[]> {
    return (await (await fetch(`${alertmanager.url}/api/v2/alerts`)).json()) as AmAlert[];
  }

  /** Polls Alertmanager while `tick` keeps traffic going, until `done` holds; bounded. */
  async function pollAlertmanager(done: (alerts: AmAlert[]) => boolean, withinMs: number, tick: () => Promise<void>): Promise<{ alerts: AmAlert[]; ms: number }> {
    const t0 = Date.now();
    for (;;) {
      await tick();
      const alerts = await amAlerts();
      if (done(alerts)) return { alerts, ms: Date.now() - t0 };
      if (Date.now() - t0 > withinMs) throw new Error(`not reached within ${withinMs} ms; Alertmanager has: ${JSON.stringify(alerts.map((a) => a.labels.alertname))}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  const syncCall = async (): Promise<void> => {
    await (await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'x', headers: { prefer: 'wait=3' } })).arrayBuffer();
  };
  const named = (alerts: AmAlert[], name: string) => alerts.filter((a) => a.labels.alertname === name);

  it(`delivers GatewayDLQNotEmpty and GatewayBreakerOpen within ${FIRE_WITHIN_MS / 1000} s of the failures`, async () => {
    const n = stack.topology.names;
    for (let i = 0; i < 3; i++) {
      const env: RequestEnvelope = {
        jobId: randomUUID(), requestId: randomUUID(), service: 'echo', mode: 'async', method: 'POST', path: '/status/400', query: '',
        headers: {}, tenant: 'default', attempt: 1, enqueuedAt: Date.now(), body: Buffer.from('job'),
      };
      ch.publish(n.workExchange, n.workRoutingKey('echo'), env.body, { ...encodeRequest(env), mandatory: true });
    }
    await ch.waitForConfirms();
    // The jobs fail permanently (400) and are dead-lettered before the downstream goes down: a job
    // whose failure leaves the breaker open is handed back, not dead-lettered (an outage must not
    // dead-letter good jobs), so the DLQ is filled first and the breaker opened by the outage after.
    const dlqEnd = Date.now() + 10_000;
    while ((await ch.checkQueue(n.deadLetterQueue('echo'))).messageCount < 3 && Date.now() < dlqEnd) await new Promise((r) => setTimeout(r, 100));
    stack.demo.down = true;
    const { alerts, ms } = await pollAlertmanager(
      (a) => named(a, 'GatewayDLQNotEmpty').length > 0 && named(a, 'GatewayBreakerOpen').length > 0,
      FIRE_WITHIN_MS,
      syncCall,
    );
    expect((await ch.checkQueue(n.deadLetterQueue('echo'))).messageCount).toBe(3);
    expect(named(alerts, 'GatewayBreakerOpen')[0]!.labels).toMatchObject({ service: 'echo', severity: 'critical' });
    expect(named(alerts, 'GatewayDLQNotEmpty')[0]!.labels).toMatchObject({ queue: 'gw.echo.dlq', severity: 'warning' });
    expect(ms).toBeLessThan(FIRE_WITHIN_MS);
    process.stderr.write(`[alerting-e2e] both alerts at Alertmanager ${ms} ms after the failures began\n`);
  });

  it(`resolves both within ${RESOLVE_WITHIN_MS / 1000} s once the downstream is fixed and the DLQ purged, notifying the critical receiver`, async () => {
    stack.demo.down = false;
    await ch.purgeQueue(stack.topology.names.deadLetterQueue('echo'));
    const { ms } = await pollAlertmanager(
      (a) => named(a, 'GatewayDLQNotEmpty').length === 0 && named(a, 'GatewayBreakerOpen').length === 0,
      RESOLVE_WITHIN_MS,
      syncCall,
    );
    expect(stack.dequeuer!.downstreams.get('echo')!.state).toBe('closed');
    process.stderr.write(`[alerting-e2e] both alerts resolved ${ms} ms after recovery\n`);
    const breakerHooks = webhooks.filter((w) => w.path === '/alerts/critical' && w.alertnames.includes('GatewayBreakerOpen'));
    const end = Date.now() + 5000;
    while (!breakerHooks.some((w) => w.status === 'resolved') && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      breakerHooks.splice(0, breakerHooks.length, ...webhooks.filter((w) => w.path === '/alerts/critical' && w.alertnames.includes('GatewayBreakerOpen')));
    }
    expect(breakerHooks.map((w) => w.status)).toEqual(expect.arrayContaining(['firing', 'resolved']));
  });
});
