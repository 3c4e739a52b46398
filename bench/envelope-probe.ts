/**
 * CPU per sync request of the message envelope, v1 against v2 (ADR 1403): what the enqueuer spends
 * building the publish properties and amqplib encoding them, and what the dequeuer spends on
 * amqplib decoding the properties frame and `decodeRequest`. Deterministic (one process, no I/O),
 * so it resolves differences the end-to-end bench cannot on a shared 2-core machine.
 *
 * With `--broker` it also publishes each variant's sync request to a fanout exchange without bindings
 * on RABBITMQ_URL (default the local broker) and reads the broker's CPU from /proc: RabbitMQ decodes
 * the properties of every publish, so this is the broker's share of the envelope.
 *
 *   node bench/envelope-probe.ts            # 5 alternating rounds of 100,000 each, medians
 *   node bench/envelope-probe.ts --broker   # + broker µs per publish, 5 alternating rounds of 20,000
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import amqp, { type Message } from 'amqplib';
import { cpuSeconds, pidListeningOn } from './lib/cpu.ts';
import { decodeRequest, encodeRequest, type RequestEnvelope, type SyncEnvelopeVersion } from '../shared/envelope.ts';

const require = createRequire(import.meta.url);
// amqplib's codec is not in its package exports: loaded by file path, for this probe only.
const lib = join(dirname(require.resolve('amqplib')), 'lib');
const defs = require(join(lib, 'defs.js')) as {
  BasicProperties: number;
  encodeProperties(id: number, channel: number, size: number, fields: object): Buffer;
  decode(id: number, buf: Buffer): Record<string, unknown>;
};
const args = require(join(lib, 'api_args.js')) as { publish(exchange: string, routingKey: string, options: object): object };

const N = Number(process.env.PROBE_N ?? 100_000);
const ROUNDS = Number(process.env.PROBE_ROUNDS ?? 5);
const body = Buffer.alloc(1024, 'x');

/** The bench's sync request: `POST /v1/services/echo/echo`, 1 KiB JSON, a trace context, the default tenant. */
function envelope(i: number): RequestEnvelope {
  const now = Date.now();
  return {
    jobId: `0b8f7e4c-3d2a-4f6b-9c1e-${String(i).padStart(12, '0')}`, requestId: `req-${i}`, service: 'echo', mode: 'sync',
    method: 'POST', path: '/echo', query: '', headers: { 'content-type': 'application/json', 'content-length': '1024', accept: '*/*' },
    tenant: 'default', attempt: 1, enqueuedAt: now, deadline: now + 30_000,
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', body,
  };
}

function encodeOnce(v: SyncEnvelopeVersion, i: number): Buffer {
  const options = encodeRequest(envelope(i), { expirationMs: 30_000, syncVersion: v, replyTo: 'amq.rabbitmq.reply-to.g1h2AA5yZXBseUA2ODQ4NjY1MgAAAAAAAAAAAAAAAGVbB2E=' });
  return defs.encodeProperties(defs.BasicProperties, 1, body.length, args.publish('gw.work', 'rpc.echo', options));
}

function time(fn: (i: number) => void): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < N; i++) fn(i);
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / N;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results: Record<string, { encode: number[]; decode: number[]; bytes: number }> = {};
for (const v of [1, 2] as const) {
  const frame = encodeOnce(v, 0);
  // The properties payload starts after the frame header (7 bytes) and class id, weight, body size (12).
  const payload = frame.subarray(7, frame.length - 1);
  results[`v${v}`] = { encode: [], decode: [], bytes: frame.length };
  const decoded = defs.decode(defs.BasicProperties, payload.subarray(12));
  decodeRequest({ content: body, fields: {} as Message['fields'], properties: decoded as unknown as Message['properties'] });
}
for (let r = 0; r < ROUNDS; r++) {
  for (const v of [1, 2] as const) {
    const res = results[`v${v}`]!;
    res.encode.push(time((i) => encodeOnce(v, i)));
    const payload = encodeOnce(v, 0).subarray(7 + 12, -1);
    res.decode.push(time(() => {
      const properties = defs.decode(defs.BasicProperties, payload) as unknown as Message['properties'];
      decodeRequest({ content: body, fields: {} as Message['fields'], properties });
    }));
  }
}
for (const [v, r] of Object.entries(results)) {
  console.log(`${v}: properties frame ${r.bytes} B, encode ${median(r.encode).toFixed(2)} µs, decode ${median(r.decode).toFixed(2)} µs per request (medians of ${ROUNDS} × ${N.toLocaleString('en-US')})`);
}

if (process.argv.includes('--broker')) await brokerShare();

/** Broker CPU µs per publish of each variant (unconfirmed, to a fanout exchange with no queue). */
async function brokerShare(): Promise<void> {
  const url = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
  const pid = pidListeningOn(Number(new URL(url).port || 5672));
  if (pid === undefined) throw new Error(`no local broker process listens on ${url}`);
  const conn = await amqp.connect(url, { noDelay: true });
  const ch = await conn.createChannel();
  const exchange = `gw-envelope-probe-${process.pid}`;
  await ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: false });
  const per = Number(process.env.PROBE_BROKER_N ?? 20_000);
  const us: Record<string, number[]> = { v1: [], v2: [] };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of [1, 2] as const) {
        const options = encodeRequest(envelope(r), { expirationMs: 30_000, syncVersion: v, replyTo: 'amq.rabbitmq.reply-to.g1h2AA5yZXBseUA2ODQ4NjY1MgAAAAAAAAAAAAAAAGVbB2E=' });
        // A round trip first and last, so the window holds exactly this batch's work.
        await ch.checkExchange(exchange);
        const before = cpuSeconds(pid)!;
        for (let i = 0; i < per; i++) {
          if (!ch.publish(exchange, '', body, options)) await new Promise((resolve) => ch.once('drain', resolve));
        }
        await ch.checkExchange(exchange);
        await new Promise((resolve) => setTimeout(resolve, 200));
        us[`v${v}`]!.push(((cpuSeconds(pid)! - before) * 1e6) / per);
      }
    }
  } finally {
    await ch.deleteExchange(exchange);
    await conn.close();
  }
  for (const [v, xs] of Object.entries(us)) {
    console.log(`${v}: broker ${median(xs).toFixed(1)} µs per publish (medians of ${ROUNDS} × ${per.toLocaleString('en-US')}; runs ${xs.map((x) => x.toFixed(1)).join(' / ')})`);
  }
}
