// Raw RPC ceiling, server side (its own process, like the dequeuer): a minimal amqplib consumer
// that calls the downstream with undici and replies on direct reply-to. Also the worker of the
// "minimal Express pipeline" baseline (prefetch 64). No breaker, no
// metrics, no envelope. Env: RABBITMQ_URL, QUEUE, DOWNSTREAM_URL, PREFETCH.
import { connect } from 'amqplib';
import { Pool } from 'undici';

const url = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const queue = process.env.QUEUE ?? 'bench.raw.rpc';
const downstream = new URL(process.env.DOWNSTREAM_URL ?? 'http://127.0.0.1:8081/echo');
const prefetch = Number(process.env.PREFETCH ?? 32);

const pool = new Pool(downstream.origin, { connections: 64, keepAliveTimeout: 10_000 });
const connection = await connect(url, { noDelay: true });
const consumeChannel = await connection.createChannel();
const replyChannel = await connection.createChannel();
await consumeChannel.prefetch(prefetch);
await consumeChannel.consume(queue, (msg) => {
  if (!msg) return;
  void pool
    .request({ method: 'POST', path: downstream.pathname, headers: { 'content-type': 'application/json' }, body: msg.content })
    .then(async (res) => {
      const body = Buffer.from(await res.body.arrayBuffer());
      const contentType = res.headers['content-type'];
      replyChannel.publish('', msg.properties.replyTo as string, body, {
        correlationId: msg.properties.correlationId as string,
        headers: { status: res.statusCode },
        ...(typeof contentType === 'string' ? { contentType } : {}),
      });
    })
    .catch((err: unknown) => {
      replyChannel.publish('', msg.properties.replyTo as string, Buffer.from(String(err)), { correlationId: msg.properties.correlationId as string, headers: { status: 0 } });
    })
    .finally(() => consumeChannel.ack(msg));
}, { noAck: false });
process.stdout.write('{"ready":true}\n');

const stop = (): void => {
  void connection
    .close()
    .catch(() => undefined)
    .then(() => pool.close())
    .finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
