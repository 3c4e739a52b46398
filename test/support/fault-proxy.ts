import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * What the proxy does to traffic, with Toxiproxy semantics:
 * - `pass`: bytes flow both ways.
 * - `down`: the listener closes (new connects get ECONNREFUSED) and every socket is reset.
 * - `blackhole`: sockets stay open, bytes are read and dropped both ways (a silent partition);
 *   like Toxiproxy's `timeout` toxic with timeout 0, dropped bytes are gone after healing.
 * - `{ latencyMs }`: every chunk is delayed by `latencyMs` in each direction, order kept.
 * - `reset`: an action, not a state: RSTs every current socket once; the mode stays as it was.
 */
export type FaultMode = 'pass' | 'down' | 'blackhole' | 'reset' | { latencyMs: number };

/** A running TCP fault proxy in front of one target. */
export interface FaultProxy {
  /** Port the proxy listens on (127.0.0.1); stays the same across `down` and back. */
  readonly port: number;
  /** The current mode (never `reset`). */
  readonly mode: Exclude<FaultMode, 'reset'>;
  /** `amqpUrl` with host and port replaced by the proxy's, credentials and vhost kept. */
  url(amqpUrl: string): string;
  /** Switches mode; resolves once the listener is closed or listening again. */
  setMode(mode: FaultMode): Promise<void>;
  /** Number of client connections currently proxied. */
  connections(): number;
  /** Closes the listener and destroys every socket; idempotent. */
  close(): Promise<void>;
}

/** Where the proxy forwards to, and optionally which local port it takes. */
export interface FaultProxyOptions {
  targetHost: string;
  targetPort: number;
  /** @default 0 (a free port) */
  listenPort?: number;
}

interface Pair {
  client: Socket;
  upstream: Socket;
}

/** Starts a fault proxy on 127.0.0.1 in mode `pass`. */
export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const pairs = new Set<Pair>();
  let mode: Exclude<FaultMode, 'reset'> = 'pass';
  let server: Server | undefined;
  let closed = false;

  const forward = (src: Socket, dest: Socket): void => {
    let notBeforeMs = 0;
    src.on('data', (chunk: Buffer) => {
      if (mode === 'blackhole' || mode === 'down') return;
      if (mode === 'pass') {
        if (!dest.write(chunk)) {
          src.pause();
          dest.once('drain', () => src.resume());
        }
        return;
      }
      // Monotonic send times keep chunk order when the latency is changed mid-stream.
      notBeforeMs = Math.max(Date.now() + mode.latencyMs, notBeforeMs);
      setTimeout(() => {
        if (!dest.destroyed) dest.write(chunk);
      }, notBeforeMs - Date.now());
    });
    src.on('end', () => {
      if (mode === 'blackhole') return;
      const delayMs = typeof mode === 'object' ? Math.max(0, notBeforeMs - Date.now()) : 0;
      setTimeout(() => dest.end(), delayMs);
    });
  };

  const onConnection = (client: Socket): void => {
    const upstream = connect({ host: opts.targetHost, port: opts.targetPort });
    const pair: Pair = { client, upstream };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const teardown = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', teardown);
    upstream.on('error', teardown);
    client.on('close', teardown);
    upstream.on('close', teardown);
    forward(client, upstream);
    forward(upstream, client);
  };

  const listen = (port: number): Promise<Server> => new Promise((resolve, reject) => {
    const s = createServer(onConnection);
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      s.off('error', reject);
      resolve(s);
    });
  });

  const closeListener = async (): Promise<void> => {
    const s = server;
    server = undefined;
    if (s) await new Promise((resolve) => s.close(resolve));
  };

  const resetAll = (): void => {
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      pair.client.resetAndDestroy();
      pair.upstream.resetAndDestroy();
    }
  };

  server = await listen(opts.listenPort ?? 0);
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    get mode() {
      return mode;
    },
    url(amqpUrl: string): string {
      const parsed = new URL(amqpUrl);
      parsed.hostname = '127.0.0.1';
      parsed.port = String(port);
      return parsed.toString();
    },
    async setMode(next: FaultMode): Promise<void> {
      if (closed) throw new Error('fault proxy is closed');
      if (next === 'reset') {
        resetAll();
        return;
      }
      mode = typeof next === 'object' ? { latencyMs: next.latencyMs } : next;
      if (next === 'down') {
        // Close first so nothing connects between the reset and the close.
        const closing = closeListener();
        resetAll();
        await closing;
      } else if (!server) {
        server = await listen(port);
      }
    },
    connections: () => pairs.size,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const closing = closeListener();
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        pair.client.destroy();
        pair.upstream.destroy();
      }
      await closing;
    },
  };
}
