import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BrokerConnection } from '../../shared/amqp/broker-connection.ts';
import { readTls } from '../../shared/config/env.ts';
import { freePorts, startPrivateNode, type PrivateNode } from '../../scripts/lib/rabbit-node.ts';
import { LogSink, Stack } from '../support/stack.ts';
import { until } from '../support/jobs.ts';

const run = promisify(execFile);

/** A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by it. */
async function makeCertificates(dir: string): Promise<{ ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string }> {
  const f = (name: string): string => join(dir, name);
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=gateway test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  await writeFile(f('server.ext'), 'subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n');
  await writeFile(f('client.ext'), 'extendedKeyUsage = clientAuth\n');
  for (const who of ['server', 'client']) {
    await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${who === 'server' ? 'localhost' : 'gw-enqueuer'}`, '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`));
    await openssl('x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f(`${who}.ext`), '-out', f(`${who}.pem`));
  }
  return { ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

/**
 * `amqps://` as the README documents it: a private node with a TLS listener that verifies client
 * certificates, and the pair configured only through `RABBITMQ_URL` and `AMQP_CA_FILE` /
 * `AMQP_CERT_FILE` / `AMQP_KEY_FILE`.
 */
describe('TLS to the broker (amqps:// with CA, client certificate and key)', () => {
  let dir: string;
  let node: PrivateNode;
  let certs: Awaited<ReturnType<typeof makeCertificates>>;
  let tlsUrl: string;
  let stack: Stack | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gw-tls-'));
    certs = await makeCertificates(dir);
    const [tlsPort] = await freePorts(1);
    node = await startPrivateNode({
      config: {
        'listeners.ssl.default': `127.0.0.1:${tlsPort}`,
        'ssl_options.cacertfile': certs.ca,
        'ssl_options.certfile': certs.serverCert,
        'ssl_options.keyfile': certs.serverKey,
        'ssl_options.verify': 'verify_peer',
        'ssl_options.fail_if_no_peer_cert': 'true',
      },
    });
    tlsUrl = `amqps://guest:guest@localhost:${tlsPort}`;
  });
  afterAll(async () => {
    await stack?.stop(node.url).catch(() => undefined);
    await node?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('runs a sync request and an async job end to end with both services on amqps://, and the broker reports their connections as TLS', async () => {
    const env = { RABBITMQ_URL: tlsUrl, AMQP_CA_FILE: certs.ca, AMQP_CERT_FILE: certs.clientCert, AMQP_KEY_FILE: certs.clientKey };
    stack = await Stack.start({ url: node.url, prefix: 'gw', enqueuerEnv: env, dequeuerEnv: env });
    const sync = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', body: 'over tls' });
    expect(sync.status).toBe(200);
    expect(await sync.text()).toBe('over tls');

    const accepted = await fetch(`${stack.baseUrl}/v1/services/echo/echo`, { method: 'POST', headers: { prefer: 'respond-async' }, body: 'job over tls' });
    expect(accepted.status).toBe(202);
    const { id } = (await accepted.json()) as { id: string };
    const done = await until(async () => ((await (await fetch(`${stack!.baseUrl}/v1/jobs/${id}`)).json()) as { state: string }).state === 'succeeded', 15_000, 'the job succeeded');
    expect(done).toBe(true);

    // Every connection of the pair (enqueuer: publish, events, audit, DLQ; dequeuer: publish, consume, cancellations) is TLS.
    const rows = (await node.rabbitmqctl(['list_connections', 'ssl', 'client_properties', '--quiet', '--no-table-headers'])).trim().split('\n').filter(Boolean);
    const ours = rows.map((r) => ({ ssl: r.split('\t')[0], role: /connection_name","((?:en|de)queuer[^@"]*)@/.exec(r)?.[1] })).filter((c) => c.role);
    expect(new Set(ours.map((c) => c.role))).toEqual(new Set(['enqueuer', 'enqueuer-events', 'enqueuer-audit', 'enqueuer-dlq-consume', 'enqueuer-dlq-publish', 'dequeuer-publish', 'dequeuer-consume', 'dequeuer-cancellations']));
    for (const c of ours) expect(c).toEqual({ role: c.role, ssl: 'true' });
  });

  it('does not connect without the CA (the broker certificate is not trusted) or without a client certificate (the broker requires one), and says why', async () => {
    const cases = [
      { what: 'no CA', tls: readTls({ AMQP_CERT_FILE: certs.clientCert, AMQP_KEY_FILE: certs.clientKey }), expect: /self-signed certificate/ },
      { what: 'no client certificate', tls: readTls({ AMQP_CA_FILE: certs.ca }), expect: /certificate required/ },
    ];
    for (const c of cases) {
      const logs = new LogSink();
      const conn = new BrokerConnection({ url: tlsUrl, role: `tls-${c.what}`, logger: logs.logger(), connectTimeoutMs: 2_000, reconnectBaseMs: 200, reconnectCapMs: 500, ...(c.tls ? { tls: c.tls } : {}) });
      conn.start();
      try {
        // Refused, and tried again with backoff (the process keeps running).
        const failures = (): Array<Record<string, unknown>> => logs.lines.filter((l) => l.msg === 'broker connect failed');
        await until(() => failures().length >= 2, 10_000, `two failed connects (${c.what})`);
        const failed = failures()[0]!;
        expect(conn.state, c.what).not.toBe('connected');
        expect(JSON.stringify(failed.err), c.what).toMatch(c.expect);
        process.stderr.write(`[tls] ${c.what}: ${(failed.err as { message?: string }).message}\n`);
      } finally {
        await conn.close();
      }
    }
  });
});
