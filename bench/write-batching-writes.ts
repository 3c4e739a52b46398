// Socket writes per AMQP publish in the dequeuer's reply pattern (docs/adr/0006): 32 loops each
// POST to the echo downstream with undici and publish one message per answer, on one connection
// with write batching off, on (`tick`: uncork on the next tick, what the services do) and, for
// comparison, uncorked once per event-loop iteration (`loop`, setImmediate: tried, not adopted).
// Counts the broker socket's write/writev calls (each one a syscall), so the figure does not
// depend on how busy the machine is. Run: node bench/write-batching-writes.ts
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { connect } from 'amqplib';
import { Pool } from 'undici';
import { batchSocketWrites } from '../shared/amqp/write-batching.ts';

const url = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const N = Number(process.env.N ?? 10_000);
const port = 20_000 + (process.pid % 20_000);
const echo = spawn(process.execPath, [join(import.meta.dirname, 'baselines/echo-server.ts')], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise<void>((resolve) => echo.stdout!.once('data', () => resolve()));
const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 32 });
const body = Buffer.alloc(1024, 'x');

async function once(mode: 'off' | 'tick' | 'loop'): Promise<{ writesPerMsg: number; cpuUsPerMsg: number }> {
  const conn = await connect(url, { noDelay: true });
  const socket = (conn as unknown as { connection: { stream: Writable & { _write: (...a: unknown[]) => void; _writev?: (...a: unknown[]) => void } } }).connection.stream;
  if (mode === 'tick') batchSocketWrites(conn);
  if (mode === 'loop') {
    const write = socket.write;
    let corked = false;
    socket.write = function (this: Writable, ...args: Parameters<Writable['write']>): boolean {
      if (!corked) {
        corked = true;
        socket.cork();
        setImmediate(() => {
          corked = false;
          socket.uncork();
        });
      }
      return write.apply(this, args);
    } as Writable['write'];
  }
  let writes = 0;
  const w = socket._write.bind(socket);
  socket._write = (...a: unknown[]) => { writes++; w(...a); };
  if (socket._writev) {
    const wv = socket._writev.bind(socket);
    socket._writev = (...a: unknown[]) => { writes++; wv(...a); };
  }
  const ch = await conn.createChannel();
  const q = (await ch.assertQueue('', { exclusive: true, autoDelete: true })).queue;
  let sent = 0;
  const c0 = process.cpuUsage();
  const w0 = writes;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (sent < N) {
      sent++;
      const res = await pool.request({ method: 'POST', path: '/echo', headers: { 'content-type': 'application/json' }, body });
      const answer = Buffer.from(await res.body.arrayBuffer());
      ch.sendToQueue(q, answer, { correlationId: String(sent), headers: { 'gw-status': res.statusCode } });
    }
  }));
  const c = process.cpuUsage(c0);
  const result = { writesPerMsg: (writes - w0) / N, cpuUsPerMsg: (c.user + c.system) / N };
  await conn.close();
  return result;
}

const med = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const out: Record<string, { w: number[]; c: number[] }> = { off: { w: [], c: [] }, tick: { w: [], c: [] }, loop: { w: [], c: [] } };
for (let i = 0; i < 3; i++) {
  for (const mode of ['off', 'tick', 'loop'] as const) {
    const r = await once(mode);
    out[mode]!.w.push(r.writesPerMsg);
    out[mode]!.c.push(r.cpuUsPerMsg);
    console.log(mode, r.writesPerMsg.toFixed(3), 'writes/msg', r.cpuUsPerMsg.toFixed(1), 'µs CPU/msg (whole process)');
  }
}
for (const [k, v] of Object.entries(out)) console.log(`${k}: median ${med(v.w).toFixed(3)} socket writes per publish, ${med(v.c).toFixed(1)} µs CPU per message`);
await pool.close();
echo.kill('SIGTERM');
