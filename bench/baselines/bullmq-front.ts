// Baseline "Redis job queue", front side (its own process, like the enqueuer): what a team gets from
// the most used Node job queue in an afternoon. Express 5 with `express.raw`, one BullMQ `Queue`
// on ioredis; each request becomes `queue.add()` and is answered 202 with the job's id once Redis
// has stored it. Finished jobs are kept (the last 10,000, so a status can be read, as the gateway
// keeps its job view) and trimmed by BullMQ. The worker is bullmq-worker.ts.
// Env: REDIS_URL, QUEUE, PORT.
import { Queue } from 'bullmq';
import express from 'express';
import { Redis } from 'ioredis';

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const name = process.env.QUEUE ?? 'bench-bullmq';
const port = Number(process.env.PORT ?? 8091);

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue(name, { connection, defaultJobOptions: { removeOnComplete: 10_000, removeOnFail: 10_000 } });
await queue.waitUntilReady();

const app = express();
app.post('/v1/services/echo/echo', express.raw({ type: () => true, limit: '1mb' }), (req, res) => {
  const data = { body: (req.body as Buffer).toString('utf8'), contentType: req.get('content-type') ?? 'application/octet-stream' };
  queue.add('echo', data).then(
    (job) => res.status(202).json({ id: job.id }),
    (err: unknown) => res.status(503).json({ error: String(err) }),
  );
});
const server = app.listen(port, '127.0.0.1', () => process.stdout.write(`{"ready":true,"port":${port}}\n`));

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  void queue.close().catch(() => undefined).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
