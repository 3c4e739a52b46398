import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DemoDownstream } from '../../demo/demo-downstream.ts';
import { parseServices } from '../../shared/config/services.ts';
import { buildTopology } from '../../shared/topology/topology.ts';
import { brokerUrl, uniquePrefix } from '../support/broker.ts';
import { until } from '../support/jobs.ts';
import { deleteTopology } from '../support/stack.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** One span as OTLP/HTTP JSON carries it (ids are hex in the JSON encoding). */
interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number }
interface ReceivedSpan extends OtlpSpan { service: string }

/** SpanKind numbers of the OTLP protocol. */
const KIND = { CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

/** A minimal OTLP/HTTP receiver: POST /v1/traces with a JSON ExportTraceServiceRequest. */
class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly requests: Array<{ path: string; contentType: string }> = [];
  readonly #server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.requests.push({ path: req.url ?? '', contentType: String(req.headers['content-type']) });
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).startsWith('application/json')) {
        res.statusCode = 415;
        res.end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
      };
      for (const rs of body.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans) for (const s of ss.spans) this.spans.push({ ...s, service });
      }
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((r) => this.#server.close(() => r()));
  }
}

/** A service process from its main.ts; resolves with its HTTP port once it logged it. */
function startService(file: string, env: NodeJS.ProcessEnv, listening: string): { child: ChildProcess; port: Promise<number>; output: string[] } {
  const child = spawn(process.execPath, [join(root, file)], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const port = new Promise<number>((resolvePort, reject) => {
    let rest = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        output.push(line);
        try {
          const o = JSON.parse(line) as { msg?: string; port?: number };
          if (o.msg === listening && o.port) resolvePort(o.port);
        } catch {
          // not a log line
        }
      }
    });
    child.stderr!.on('data', (c: Buffer) => output.push(c.toString('utf8')));
    child.once('exit', (code) => reject(new Error(`${file} exited (${code}) before listening:\n${output.join('\n')}`)));
  });
  return { child, port, output };
}

function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}

describe('spans leave the process over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set', () => {
  const url = brokerUrl();
  const prefix = uniquePrefix('otlp');
  const receiver = new OtlpReceiver();
  const demo = new DemoDownstream();
  let enqueuer: ChildProcess;
  let dequeuer: ChildProcess;
  let baseUrl: string;
  let servicesJson: string;

  beforeAll(async () => {
    const endpoint = await receiver.listen();
    await demo.listen();
    servicesJson = JSON.stringify({ services: { echo: { url: demo.url } } });
    const env = {
      PATH: process.env.PATH,
      RABBITMQ_URL: url, GW_PREFIX: prefix, SERVICES_JSON: servicesJson, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info',
      // Base endpoint with a trailing slash: the exporter appends /v1/traces.
      OTEL_EXPORTER_OTLP_ENDPOINT: `${endpoint}/`,
    };
    const d = startService('dequeuer/main.ts', { ...env, SHUTDOWN_GRACE_MS: '2000' }, 'dequeuer started');
    const e = startService('enqueuer/main.ts', { ...env, SHUTDOWN_GRACE_MS: '2000' }, 'enqueuer listening');
    dequeuer = d.child;
    enqueuer = e.child;
    const [dPort, ePort] = await Promise.all([d.port, e.port]);
    baseUrl = `http://127.0.0.1:${ePort}`;
    await until(async () => (await fetch(`${baseUrl}/readyz`)).ok && (await fetch(`http://127.0.0.1:${dPort}/readyz`)).ok, 30_000, 'both services ready');
  });
  afterAll(async () => {
    await Promise.all([enqueuer, dequeuer].filter(Boolean).map(stopService));
    await receiver.close();
    await demo.close();
    if (servicesJson) await deleteTopology(url, buildTopology(parseServices(JSON.parse(servicesJson), 'test'), { prefix }));
  });
  beforeEach(() => {
    expect.hasAssertions();
  });

  it("delivers one job's enqueuer, dequeuer and downstream-call spans with one trace id and parent links", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientSpanId = '00f067aa0ba902b7';
    const res = await fetch(`${baseUrl}/v1/services/echo/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'respond-async', traceparent: `00-${traceId}-${clientSpanId}-01` },
      body: '{"hello":"otlp"}',
    });
    expect(res.status).toBe(202);
    const { id: jobId } = (await res.json()) as { id: string };
    expect(res.headers.get('x-gw-job-id')).toBe(jobId);
    await until(async () => ((await (await fetch(`${baseUrl}/v1/jobs/${jobId}`)).json()) as { state: string }).state === 'succeeded', 20_000, 'job succeeded');

    const spans = await until(() => {
      const ours = receiver.spans.filter((s) => s.traceId === traceId);
      return ours.length >= 3 ? ours : undefined;
    }, 15_000, 'three spans of the trace at the receiver');
    expect(receiver.requests.every((r) => r.path === '/v1/traces' && r.contentType.startsWith('application/json'))).toBe(true);
    expect(spans).toHaveLength(3);
    const producer = spans.find((s) => s.kind === KIND.PRODUCER)!;
    const consumer = spans.find((s) => s.kind === KIND.CONSUMER)!;
    const call = spans.find((s) => s.kind === KIND.CLIENT)!;
    expect([producer, consumer, call].map((s) => s && `${s.service}: ${s.name}`)).toEqual([
      `enqueuer: ${prefix}.work publish`,
      `dequeuer: ${prefix}.echo.work process`,
      'dequeuer: echo call',
    ]);
    // The chain: client -> enqueuer (producer) -> dequeuer (consumer) -> downstream call (client).
    expect(producer.parentSpanId).toBe(clientSpanId);
    expect(consumer.parentSpanId).toBe(producer.spanId);
    expect(call.parentSpanId).toBe(consumer.spanId);
    expect(new Set([producer.spanId, consumer.spanId, call.spanId]).size).toBe(3);
    // The downstream saw the call span as its parent.
    const seen = demo.calls.find((c) => c.idempotencyKey === jobId);
    expect(seen?.headers.traceparent).toBe(`00-${traceId}-${call.spanId}-01`);
  });
});
