import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';

let echo: Server;
let proxy: FaultProxy;
const clients: Socket[] = [];
const echoSockets = new Set<Socket>();

beforeEach(async () => {
  expect.hasAssertions();
  echo = createServer((socket) => {
    echoSockets.add(socket);
    socket.on('close', () => echoSockets.delete(socket));
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  proxy = await startFaultProxy({ targetHost: '127.0.0.1', targetPort: (echo.address() as AddressInfo).port });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await proxy.close();
  for (const s of echoSockets) s.destroy();
  await new Promise((resolve) => echo.close(resolve));
});

async function open(): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port: proxy.port });
  clients.push(socket);
  await once(socket, 'connect');
  return socket;
}

/** Writes `text` and resolves what comes back within `waitMs` (empty string when nothing). */
async function roundTrip(socket: Socket, text: string, waitMs = 1_000): Promise<string> {
  let received = '';
  const onData = (chunk: Buffer): void => {
    received += chunk.toString('utf8');
  };
  socket.on('data', onData);
  socket.write(text);
  const deadline = Date.now() + waitMs;
  while (received.length < text.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  socket.off('data', onData);
  return received;
}

function closed(socket: Socket): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    socket.once('error', (err) => { error = err; });
    socket.once('close', () => resolve(error));
  });
}

describe('fault proxy', () => {
  it('in pass mode bytes flow both ways and connections are counted', async () => {
    const socket = await open();
    expect(await roundTrip(socket, 'hello')).toBe('hello');
    expect(proxy.connections()).toBe(1);
  });

  it('rewrites an amqp URL to the proxy port, keeping credentials and vhost', () => {
    expect(proxy.url('amqp://u:p@broker.example:5672/v%2Fh')).toBe(`amqp://u:p@127.0.0.1:${proxy.port}/v%2Fh`);
  });

  it('down resets existing sockets, refuses new ones, and pass listens again on the same port', async () => {
    const socket = await open();
    const gone = closed(socket);
    await proxy.setMode('down');
    await gone;
    expect(proxy.connections()).toBe(0);
    const refused = connect({ host: '127.0.0.1', port: proxy.port });
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
    await proxy.setMode('pass');
    expect(await roundTrip(await open(), 'back')).toBe('back');
  });

  it('blackhole keeps sockets open but drops bytes both ways', async () => {
    const socket = await open();
    expect(await roundTrip(socket, 'one')).toBe('one');
    await proxy.setMode('blackhole');
    expect(await roundTrip(socket, 'lost', 300)).toBe('');
    expect(socket.destroyed).toBe(false);
    expect(proxy.connections()).toBe(1);
    await proxy.setMode('pass');
    expect(await roundTrip(socket, 'two')).toBe('two');
  });

  it('latency delays each direction, keeping order', async () => {
    const socket = await open();
    await proxy.setMode({ latencyMs: 100 });
    const startedMs = Date.now();
    socket.write('a');
    socket.write('b');
    expect(await roundTrip(socket, 'c', 2_000)).toBe('abc');
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(195);
  });

  it('reset RSTs current sockets once and leaves the mode as it was', async () => {
    const socket = await open();
    const gone = closed(socket);
    await proxy.setMode('reset');
    const err = (await gone) as NodeJS.ErrnoException | undefined;
    expect(err?.code).toBe('ECONNRESET');
    expect(proxy.mode).toBe('pass');
    expect(await roundTrip(await open(), 'again')).toBe('again');
  });
});
