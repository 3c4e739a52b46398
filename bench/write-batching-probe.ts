// `npm run bench:write-batching` (docs/adr/0006): CPU per message of a consumer that acks and publishes one confirmed message per
// delivery, with and without write batching. Run: node bench/write-batching-probe.ts
import { connect } from 'amqplib';
import { batchSocketWrites } from '../shared/amqp/write-batching.ts';

const url = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const N = 20_000;

async function once(batch: boolean): Promise<{ cpuUsPerMsg: number; rate: number }> {
  const q = `probe-wb-${process.pid}-${Date.now()}`;
  const out = `${q}-out`;
  const setup = await connect(url, { noDelay: true });
  const sch = await setup.createConfirmChannel();
  await sch.assertQueue(q, { durable: false });
  await sch.assertQueue(out, { durable: false });
  const body = Buffer.alloc(1024, 'x');
  for (let i = 0; i < N; i++) {
    if (!sch.sendToQueue(q, body)) await new Promise((r) => sch.once('drain', r));
  }
  await sch.waitForConfirms();

  const conn = await connect(url, { noDelay: true });
  if (batch) batchSocketWrites(conn);
  const cch = await conn.createChannel();
  const pch = await conn.createConfirmChannel();
  await cch.prefetch(20);
  let done = 0;
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  await new Promise<void>((resolve) => {
    void cch.consume(q, (msg) => {
      if (!msg) return;
      pch.sendToQueue(out, msg.content, {}, () => {
        cch.ack(msg);
        if (++done === N) resolve();
      });
    });
  });
  const c = process.cpuUsage(c0);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await conn.close();
  await sch.deleteQueue(q);
  await sch.deleteQueue(out);
  await setup.close();
  return { cpuUsPerMsg: (c.user + c.system) / N, rate: N / secs };
}

const results: Record<string, { cpu: number[]; rate: number[] }> = { plain: { cpu: [], rate: [] }, batched: { cpu: [], rate: [] } };
for (let i = 0; i < 4; i++) {
  for (const batch of [false, true]) {
    const r = await once(batch);
    const k = batch ? 'batched' : 'plain';
    results[k]!.cpu.push(r.cpuUsPerMsg);
    results[k]!.rate.push(r.rate);
    console.log(k, r.cpuUsPerMsg.toFixed(1), 'µs CPU/msg', Math.round(r.rate), 'msg/s');
  }
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
for (const [k, v] of Object.entries(results)) console.log(`${k}: median ${med(v.cpu).toFixed(1)} µs CPU/msg, ${Math.round(med(v.rate))} msg/s`);
