import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { EnqueuerConfig } from '../config.ts';
import { onCheckExpectation, onClientError, onConnectMethod, trackResponse } from './client-error.ts';

/**
 * The enqueuer's HTTP server: Node's timeouts and header limits tuned from `config.limits`, the
 * raw-socket problem answers (408/431/414, `Expect`, `CONNECT`, in request order) and the drain: once {@link drain}
 * is called every response asks its client to close the keep-alive socket, so clients move to
 * another instance before the listener closes instead of meeting a closed socket.
 */
export class HttpServer {
  readonly server: Server;
  #draining = false;
  /** Responses not finished yet: told `Connection: close` when the drain starts. */
  #open = new Set<ServerResponse>();

  constructor(app: Express, limits: EnqueuerConfig['limits']) {
    const server = createServer({
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      // Node checks both timeouts only this often (30 s by default), which would stretch them.
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      keepAliveTimeout: 5_000,
      maxHeaderSize: limits.maxHeaderBytes,
      requireHostHeader: false,
    }, app);
    // One above the limit so inputLimits() sees an overflow instead of Node silently dropping fields.
    server.maxHeadersCount = limits.maxHeaderCount + 1;
    server.prependListener('request', (_req, res) => {
      if (this.#draining) {
        res.setHeader('connection', 'close');
        return;
      }
      this.#open.add(res);
      res.once('close', () => this.#open.delete(res));
    });
    // Answers stay in request order on a connection (parser errors wait for those owed before them).
    server.prependListener('request', trackResponse);
    server.on('clientError', onClientError);
    server.on('checkExpectation', onCheckExpectation);
    server.on('connect', onConnectMethod);
    this.server = server;
  }

  /** The bound port (useful with `port: 0`). */
  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  listen(port: number, host: string): Promise<void> {
    const server = this.server;
    return new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** From now on every response (those under way too) carries `Connection: close`. */
  drain(): void {
    this.#draining = true;
    for (const res of this.#open) if (!res.headersSent) res.setHeader('connection', 'close');
    this.#open.clear();
  }

  /** Stops accepting connections and closes the idle ones; requests under way continue. */
  closeListener(): void {
    this.server.close();
    this.server.closeIdleConnections();
  }

  closeAllConnections(): void {
    this.server.closeAllConnections();
  }
}
