/**
 * The broker's CPU per message at a given message rate: confirmed persistent publishes into a
 * stream (or a quorum queue) with one consumer reading and acking them, the broker's CPU read from
 * /proc. It shows that RabbitMQ's cost is per round of work more than per message: a message that
 * arrives alone costs several times what one among many costs. That is why the gateway's events
 * stream, at a few hundred batches per second, weighs more on the broker per job than its byte count
 * suggests (bench/what-limits-it.md, "The broker's share of drain").
 *
 *   node bench/broker-rate-probe.ts                    # the default cases, 5 s each, on RABBITMQ_URL or the local broker
 *   node bench/broker-rate-probe.ts stream 23000 210   # one case: queue type, bytes per message, messages per second
 *   PROBE_ACK_EVERY=50 node bench/broker-rate-probe.ts stream 23000 210   # the consumer acks every 50th (multiple)
 */
import amqp from 'amqplib';
import { cpuSeconds, pidListeningOn } from './lib/cpu.ts';

const DURATION_MS = Number(process.env.PROBE_DURATION_MS ?? 5000);
/** The consumer acks every Nth message with `multiple` (1: each message). */
const ACK_EVERY = Number(process.env.PROBE_ACK_EVERY ?? 1);
type QueueType = 'stream' | 'quorum';
interface Case { type: QueueType; bytes: number; ratePerS: number }

const DEFAULT_CASES: Case[] = [
  // The drain scenario's events stream: ~0.1 batches per job of ~2.3 KB per job, at ~2,100 jobs/s.
  { type: 'stream', bytes: 23_000, ratePerS: 210 },
  { type: 'stream', bytes: 230, ratePerS: 210 },
  { type: 'stream', bytes: 2_300, ratePerS: 2_100 },
  { type: 'quorum', bytes: 230, ratePerS: 210 },
  { type: 'quorum', bytes: 2_300, ratePerS: 2_100 },
];

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function probe(url: string, pid: number, c: Case): Promise<{ sent: number; received: number; msPerS: number; usPerMsg: number }> {
  const queue = `gw-broker-rate-probe-${process.pid}-${c.type}`;
  const publisher = await amqp.connect(url, { noDelay: true });
  const consumer = await amqp.connect(url, { noDelay: true });
  try {
    const pub = await publisher.createConfirmChannel();
    await pub.assertQueue(queue, { durable: true, arguments: c.type === 'stream' ? { 'x-queue-type': 'stream', 'x-max-length-bytes': 200_000_000 } : { 'x-queue-type': 'quorum' } });
    const sub = await consumer.createChannel();
    await sub.prefetch(100);
    let received = 0;
    await sub.consume(queue, (msg) => {
      if (!msg) return;
      received++;
      if (received % ACK_EVERY === 0) sub.ack(msg, true);
    }, { noAck: false, ...(c.type === 'stream' ? { arguments: { 'x-stream-offset': 'next' } } : {}) });
    await sleep(500);
    const body = Buffer.alloc(c.bytes, 'a');
    const cpuBefore = cpuSeconds(pid)!;
    const t0 = Date.now();
    let sent = 0;
    // Paced: every few milliseconds, the messages due by then, each confirmed before the next round.
    while (Date.now() - t0 < DURATION_MS) {
      const due = Math.floor(((Date.now() - t0) / 1000) * c.ratePerS);
      const confirms: Array<Promise<void>> = [];
      for (; sent < due; sent++) {
        confirms.push(new Promise((resolve, reject) => pub.publish('', queue, body, { persistent: true }, (err) => (err ? reject(err as Error) : resolve()))));
      }
      await Promise.all(confirms);
      await sleep(5);
    }
    const untilMs = Date.now() + 5000;
    while (received < sent && Date.now() < untilMs) await sleep(20);
    const cpuMs = (cpuSeconds(pid)! - cpuBefore) * 1000;
    const elapsedS = (Date.now() - t0) / 1000;
    await pub.deleteQueue(queue);
    return { sent, received, msPerS: cpuMs / elapsedS, usPerMsg: (cpuMs * 1000) / sent };
  } finally {
    await consumer.close().catch(() => undefined);
    await publisher.close().catch(() => undefined);
  }
}

const url = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const pid = pidListeningOn(Number(new URL(url).port || 5672));
if (pid === undefined) throw new Error(`no local broker process listens on ${new URL(url).port || 5672}: its CPU cannot be read`);
const [type, bytes, rate] = process.argv.slice(2);
const cases = type ? [{ type: type as QueueType, bytes: Number(bytes ?? 1024), ratePerS: Number(rate ?? 1000) }] : DEFAULT_CASES;
const idleBefore = cpuSeconds(pid)!;
await sleep(2000);
console.log(`broker pid ${pid}, idle ${(((cpuSeconds(pid)! - idleBefore) * 1000) / 2).toFixed(0)} ms CPU per s`);
console.log('| queue | bytes | msgs/s | sent | received | broker ms CPU per s | broker µs per message |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const c of cases) {
  const r = await probe(url, pid, c);
  console.log(`| ${c.type} | ${c.bytes} | ${c.ratePerS} | ${r.sent} | ${r.received} | ${r.msPerS.toFixed(0)} | ${r.usPerMsg.toFixed(0)} |`);
}
