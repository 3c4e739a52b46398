// Baseline "Redis job queue", worker side (its own process, like the dequeuer): a BullMQ `Worker`
// at concurrency 64 that POSTs each job's body to the downstream with undici and returns the answer
// (BullMQ stores it with the job, as the gateway keeps a job's result); a non-2xx answer fails the
// job (BullMQ's default: no retry). Env: REDIS_URL, QUEUE, DOWNSTREAM_URL, CONCURRENCY.
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Pool } from 'undici';

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const name = process.env.QUEUE ?? 'bench-bullmq';
const downstream = new URL(process.env.DOWNSTREAM_URL ?? 'http://127.0.0.1:8081/echo');
const concurrency = Number(process.env.CONCURRENCY ?? 64);

const pool = new Pool(downstream.origin, { connections: 64, keepAliveTimeout: 10_000 });
const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const worker = new Worker<{ body: string; contentType: string }>(name, async (job) => {
  const res = await pool.request({ method: 'POST', path: downstream.pathname, headers: { 'content-type': job.data.contentType }, body: job.data.body });
  const body = await res.body.text();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`downstream answered ${res.statusCode}`);
  return { status: res.statusCode, body };
}, { connection, concurrency });
await worker.waitUntilReady();
process.stdout.write('{"ready":true}\n');

const stop = (): void => {
  void worker.close().catch(() => undefined).then(() => pool.close()).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
