// Baseline "minimal Express pipeline", front side (its own process, like the enqueuer): what a team
// would write in an afternoon instead of adopting the gateway. Express 5 with `express.raw`, one
// amqplib connection (`noDelay`) and one channel without confirms, one shared direct reply-to
// consumer and a correlation map; the request is published to the worker's queue and the reply's
// status and body are sent back. The worker is raw-rpc-consumer.ts with prefetch 64.
// CONFIRMS=1 makes it publish mandatory on a confirm channel and answer 503 at once on a nack or a
// return, as the gateway does: the `express-confirms` row, which prices the confirms (docs/adr/1401).
// ASYNC=1 makes it the hand-written async front (the `express-accept-draining` row): each request
// is published persistent and mandatory on a confirm channel to QUEUE and answered 202 with its id
// once the broker confirms it (503 on a nack or a return); no job status is kept anywhere.
// Env: RABBITMQ_URL, QUEUE, PORT, REPLY_TIMEOUT_MS, CONFIRMS, ASYNC.
import { connect, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import express, { type Express, type Response } from 'express';

const url = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const queue = process.env.QUEUE ?? 'bench.raw.xrpc';
const port = Number(process.env.PORT ?? 8090);
const timeoutMs = Number(process.env.REPLY_TIMEOUT_MS ?? 30_000);
const REPLY_TO = 'amq.rabbitmq.reply-to';

const asyncMode = process.env.ASYNC === '1';
const confirms = asyncMode || process.env.CONFIRMS === '1';
const connection = await connect(url, { noDelay: true });
const channel = confirms ? await connection.createConfirmChannel() : await connection.createChannel();
const app = express();
const raw = express.raw({ type: () => true, limit: '1mb' });
let seq = 0;

if (asyncMode) acceptRoute(app, channel as ConfirmChannel);
else await requestReplyRoute(app);

/** POST → persistent mandatory publish → 202 `{id}` after the confirm. */
function acceptRoute(router: Express, ch: ConfirmChannel): void {
  const accepting = new Map<string, Response>();
  const answer = (id: string, status: number, body: object): void => {
    const res = accepting.get(id);
    if (!res) return;
    accepting.delete(id);
    res.status(status).json(body);
  };
  // A return comes before the publish's confirm, so the 503 wins over the 202.
  ch.on('return', (msg: ConsumeMessage) => answer(msg.properties.messageId as string, 503, { error: 'not routed' }));
  router.post('/v1/services/echo/echo', raw, (req, res) => {
    const id = String(++seq);
    accepting.set(id, res);
    const options = { messageId: id, persistent: true, mandatory: true, contentType: req.get('content-type') ?? 'application/octet-stream' };
    ch.publish('', queue, req.body as Buffer, options, (err: unknown) => (err ? answer(id, 503, { error: 'not accepted' }) : answer(id, 202, { id })));
  });
}

/** POST → publish with reply-to → the worker's reply, matched by correlation id. */
async function requestReplyRoute(router: Express): Promise<void> {
  const pending = new Map<string, { res: Response; timer: NodeJS.Timeout }>();
  const fail = (id: string): void => {
    const entry = pending.get(id);
    if (!entry) return;
    pending.delete(id);
    clearTimeout(entry.timer);
    entry.res.status(503).json({ error: 'not routed or not accepted' });
  };
  channel.on('return', (msg: ConsumeMessage) => fail(msg.properties.correlationId as string));
  await channel.consume(REPLY_TO, (msg: ConsumeMessage | null) => {
    if (!msg) return;
    const id = msg.properties.correlationId as string;
    const entry = pending.get(id);
    if (!entry) return;
    pending.delete(id);
    clearTimeout(entry.timer);
    const status = Number((msg.properties.headers as Record<string, unknown> | undefined)?.status) || 502;
    entry.res.status(status).set('content-type', (msg.properties.contentType as string | undefined) ?? 'application/json').end(msg.content);
  }, { noAck: true });
  router.post('/v1/services/echo/echo', raw, (req, res) => {
    const id = String(++seq);
    const timer = setTimeout(() => {
      pending.delete(id);
      res.status(504).json({ error: 'timeout' });
    }, timeoutMs);
    pending.set(id, { res, timer });
    const options = { correlationId: id, replyTo: REPLY_TO, contentType: req.get('content-type') ?? 'application/octet-stream' };
    if (confirms) channel.publish('', queue, req.body as Buffer, { ...options, mandatory: true }, (err: unknown) => err && fail(id));
    else channel.publish('', queue, req.body as Buffer, options);
  });
}

const server = app.listen(port, '127.0.0.1', () => process.stdout.write(`{"ready":true,"port":${port}}\n`));

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  void connection.close().catch(() => undefined).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
