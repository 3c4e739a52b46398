// The draining consumer of the "raw publish while draining" baseline, in its own process (like the
// dequeuer): the raw drain consumer (prefetch, POST to the downstream with undici, ack) running
// until stopped. Env: RABBITMQ_URL, QUEUE, DOWNSTREAM_URL, PREFETCH.
import { runRawDrain } from './raw-drain.ts';

const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
await runRawDrain({
  url: process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  queue: process.env.QUEUE ?? 'bench.raw.work',
  count: Number.POSITIVE_INFINITY,
  prefetch: Number(process.env.PREFETCH ?? 20),
  downstreamUrl: process.env.DOWNSTREAM_URL ?? 'http://127.0.0.1:8081/echo',
  maxDurationS: 24 * 3600,
  onReady: () => process.stdout.write('{"ready":true}\n'),
});
