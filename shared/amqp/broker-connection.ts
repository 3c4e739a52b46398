import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { connect, type ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import { fullJitterDelayMs } from '../backoff.ts';
import { batchSocketWrites } from './write-batching.ts';

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface BrokerConnectionOptions {
  /**
   * `amqp://` or `amqps://` URL (credentials URL-encoded), or a comma-separated list of the nodes
   * of a cluster: each connect tries the next one after a failure or a lost connection.
   */
  url: string;
  /** Role shown in the management UI as `<role>@<host>` and used in metrics. */
  role: string;
  /** Heartbeat (s); 5–20 s detects a dead peer quickly without false positives. @default 10 */
  heartbeatS?: number;
  /**
   * A connected socket that receives nothing for this long is presumed dead and destroyed (which
   * fails its channels and reconnects). RabbitMQ sends a heartbeat whenever it sent nothing for half
   * the heartbeat, so one heartbeat of silence is two missed broker heartbeats. amqplib's own check
   * needs two to three full heartbeats (25-27 s at 10 s). @default heartbeatS · 1000
   */
  deadPeerMs?: number;
  /** TCP connect timeout (ms). @default 5000 */
  connectTimeoutMs?: number;
  /** Reconnect backoff bounds (ms). @default 100 / 5000 */
  reconnectBaseMs?: number;
  reconnectCapMs?: number;
  /** TLS options for `amqps://` (CA, cert, key), passed to `tls.connect`. */
  tls?: { ca?: Buffer[]; cert?: Buffer; key?: Buffer; passphrase?: string };
  /** Cork the socket for one event-loop turn so a turn's frames leave in one `writev` ({@link batchSocketWrites}). @default true */
  writeBatching?: boolean;
  logger: Logger;
  /**
   * Runs after every (re)connect, before the connection counts as up: assert topology, open
   * channels, start consumers. A throw closes the connection and retries with backoff, except a
   * throw that {@link BrokerConnectionOptions.isFatal} accepts.
   */
  setup?: (connection: ChannelModel, generation: number) => Promise<void>;
  /**
   * An error of `setup` that retrying cannot fix (e.g. the broker lacks a capability): the
   * connection closes for good, `fatal` is emitted and every {@link BrokerConnection.waitUntilUp} rejects.
   */
  isFatal?: (err: unknown) => boolean;
}

/** The nodes of a `RABBITMQ_URL` (one URL, or a comma-separated list of a cluster's nodes). */
export function splitBrokerUrls(value: string): string[] {
  const urls = value.split(',').map((u) => u.trim()).filter(Boolean);
  return urls.length > 0 ? urls : [value];
}

/** Replaces the password of a URL for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

/**
 * One AMQP connection that reconnects with backoff and re-runs `setup` each time. Emits
 * `up` (connection, generation), `down` (error), `blocked` (reason), `unblocked`. Channel and
 * connection errors are logged, never thrown at the process.
 */
export class BrokerConnection extends EventEmitter {
  readonly role: string;
  #options: BrokerConnectionOptions;
  readonly #urls: string[];
  #urlIndex = 0;
  #state: ConnectionState = 'idle';
  #connection: ChannelModel | undefined;
  #generation = 0;
  #blocked = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;
  #reconnects = 0;
  #upWaiters: Array<() => void> = [];
  #watch: NodeJS.Timeout | undefined;
  /** `bytesRead` of the socket when a publish last went unconfirmed; undefined = not suspect. */
  #suspectRx: number | undefined;
  #fatalWaiters: Array<(err: Error) => void> = [];
  #fatal: Error | undefined;

  constructor(options: BrokerConnectionOptions) {
    super();
    this.role = options.role;
    this.#options = options;
    this.#urls = splitBrokerUrls(options.url);
  }

  get state(): ConnectionState {
    return this.#state;
  }
  get blocked(): boolean {
    return this.#blocked;
  }
  /** Increments on every successful connect; deliveries of an older generation must not be acked. */
  get generation(): number {
    return this.#generation;
  }
  get connection(): ChannelModel | undefined {
    return this.#state === 'connected' ? this.#connection : undefined;
  }
  get lastError(): string | undefined {
    return this.#lastError;
  }
  get reconnects(): number {
    return this.#reconnects;
  }

  /**
   * True after {@link markSuspect} until the broker sends anything again: a publish went
   * unconfirmed and nothing arrived since, as in a silent partition. New work should be refused at
   * once instead of waiting for its own publish timeout; the dead-peer check closes the connection
   * if the silence lasts.
   */
  get suspect(): boolean {
    if (this.#suspectRx === undefined) return false;
    const rx = socketOf(this.#connection)?.bytesRead;
    if (this.#state !== 'connected' || rx === undefined || rx !== this.#suspectRx) {
      this.#suspectRx = undefined;
      return false;
    }
    return true;
  }

  /** A publish on this connection was not confirmed in time: suspect until the broker speaks again. */
  markSuspect(): void {
    const rx = socketOf(this.#connection)?.bytesRead;
    if (this.#state === 'connected' && rx !== undefined && this.#suspectRx === undefined) {
      this.#suspectRx = rx;
      this.#options.logger.warn({ role: this.role }, 'publish not confirmed and nothing heard from the broker since: connection suspect');
    }
  }

  /**
   * Watches the socket's received byte count; a silence of `deadPeerMs` destroys the socket. A
   * late timer (the event loop was blocked, so the socket was not read either) never counts.
   */
  #watchPeer(conn: ChannelModel): void {
    clearInterval(this.#watch);
    const socket = socketOf(conn);
    if (!socket) return;
    const deadMs = this.#options.deadPeerMs ?? (this.#options.heartbeatS ?? 10) * 1000;
    const tickMs = Math.min(250, Math.max(25, Math.floor(deadMs / 8)));
    let lastRx = socket.bytesRead;
    let lastRxAt = Date.now();
    let lastTick = lastRxAt;
    this.#watch = setInterval(() => {
      const now = Date.now();
      const late = now - lastTick > tickMs + 1000;
      lastTick = now;
      if (this.#connection !== conn || socket.destroyed) {
        clearInterval(this.#watch);
        return;
      }
      if (socket.bytesRead !== lastRx || late) {
        lastRx = socket.bytesRead;
        lastRxAt = now;
        return;
      }
      if (now - lastRxAt >= deadMs) {
        clearInterval(this.#watch);
        this.#options.logger.warn({ role: this.role, silentMs: now - lastRxAt }, 'nothing received from the broker for two heartbeats: connection presumed dead');
        socket.destroy(new Error(`no data from the broker for ${now - lastRxAt} ms (missed heartbeats)`));
      }
    }, tickMs);
    this.#watch.unref();
  }

  /** Starts connecting in the background; never rejects because the broker is down. */
  start(): void {
    if (this.#state !== 'idle') return;
    void this.#connect();
  }

  /** Resolves when the connection is up (setup done), rejects after `timeoutMs`. */
  waitUntilUp(timeoutMs: number): Promise<void> {
    if (this.#state === 'connected') return Promise.resolve();
    if (this.#fatal) return Promise.reject(this.#fatal);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#upWaiters = this.#upWaiters.filter((w) => w !== done);
        this.#fatalWaiters = this.#fatalWaiters.filter((w) => w !== fail);
        reject(new Error(`${this.role}: broker not reachable within ${timeoutMs} ms (${this.#lastError ?? 'no error yet'})`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      this.#upWaiters.push(done);
      this.#fatalWaiters.push(fail);
    });
  }

  /** The error that stopped this connection for good ({@link BrokerConnectionOptions.isFatal}), if any. */
  get fatalError(): Error | undefined {
    return this.#fatal;
  }

  async #connect(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'connecting';
    const o = this.#options;
    const url = this.#urls[this.#urlIndex % this.#urls.length]!;
    let conn: ChannelModel | undefined;
    try {
      conn = await withTimeout(
        connect(withHeartbeat(url, o.heartbeatS ?? 10), {
          noDelay: true,
          timeout: o.connectTimeoutMs ?? 5000,
          clientProperties: { connection_name: `${o.role}@${hostname()}` },
          ...o.tls,
        }),
        // A broker that is starting or stopping can accept TCP and never finish the AMQP
        // handshake; without this bound the reconnect loop would wait forever.
        (o.connectTimeoutMs ?? 5000) * 2,
      );
      if ((this.#state as ConnectionState) === 'closed') {
        await conn.close().catch(() => {});
        return;
      }
      if (o.writeBatching !== false && !batchSocketWrites(conn)) {
        o.logger.warn({ role: o.role }, 'amqplib connection has no corkable socket: frames are written one by one');
      }
      this.#attach(conn);
      const generation = this.#generation + 1;
      this.#connection = conn;
      await o.setup?.(conn, generation);
      if ((this.#state as ConnectionState) === 'closed') return;
      this.#generation = generation;
      this.#state = 'connected';
      this.#suspectRx = undefined;
      this.#watchPeer(conn);
      this.#attempt = 0;
      this.#lastError = undefined;
      o.logger.info({ role: o.role, url: redactUrl(url), generation }, 'broker connected');
      this.emit('up', conn, generation);
      this.#fatalWaiters = [];
      for (const w of this.#upWaiters.splice(0)) w();
    } catch (err) {
      this.#lastError = (err as Error).message;
      if (o.isFatal?.(err)) {
        this.#fatal = err as Error;
        o.logger.fatal({ role: o.role, url: redactUrl(url), err }, 'broker cannot serve this gateway; not retrying');
        if (conn) {
          conn.removeAllListeners('close');
          conn.on('close', () => {});
          await conn.close().catch(() => {});
        }
        this.#connection = undefined;
        this.#state = 'closed';
        this.#upWaiters = [];
        for (const w of this.#fatalWaiters.splice(0)) w(err as Error);
        this.emit('fatal', err);
        return;
      }
      o.logger.warn({ role: o.role, url: redactUrl(url), err, attempt: this.#attempt }, 'broker connect failed');
      this.#urlIndex++; // the next node of a cluster list, if there is one
      if (conn) {
        conn.removeAllListeners('close');
        conn.on('close', () => {});
        await conn.close().catch(() => {});
      }
      this.#connection = undefined;
      this.#scheduleReconnect();
    }
  }

  #attach(conn: ChannelModel): void {
    const log = this.#options.logger;
    conn.on('error', (err: Error) => {
      this.#lastError = err.message;
      log.warn({ role: this.role, err }, 'broker connection error');
    });
    conn.on('handler-error', (err: Error, eventName: string) => {
      log.error({ role: this.role, err, eventName }, 'error thrown in an AMQP event handler');
      this.emit('handler-error', err);
    });
    conn.on('blocked', (reason: string) => {
      this.#blocked = true;
      log.warn({ role: this.role, reason }, 'broker blocked this connection');
      this.emit('blocked', reason);
    });
    conn.on('unblocked', () => {
      this.#blocked = false;
      log.info({ role: this.role }, 'broker unblocked this connection');
      this.emit('unblocked');
    });
    conn.on('close', (err?: Error) => {
      if (this.#connection !== conn) return;
      this.#connection = undefined;
      clearInterval(this.#watch);
      this.#suspectRx = undefined;
      const wasUp = this.#state === 'connected';
      if (this.#blocked) {
        this.#blocked = false;
        this.emit('unblocked');
      }
      if (this.#state === 'closed') return;
      this.#lastError = err?.message ?? 'connection closed';
      this.#state = 'disconnected';
      this.#urlIndex++; // that node may be gone: reconnect to the next one of a cluster list first
      log.warn({ role: this.role, err }, 'broker connection lost');
      if (wasUp) this.emit('down', err ?? new Error('connection closed'));
      this.#scheduleReconnect();
    });
  }

  #scheduleReconnect(): void {
    if (this.#state === 'closed' || this.#timer) return;
    this.#state = 'disconnected';
    const o = this.#options;
    const delayMs = fullJitterDelayMs(this.#attempt++, o.reconnectBaseMs ?? 100, o.reconnectCapMs ?? 5000, 0.5);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#reconnects++;
      this.emit('reconnecting');
      void this.#connect();
    }, delayMs);
  }

  /** Closes the connection and stops reconnecting. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearTimeout(this.#timer);
    clearInterval(this.#watch);
    this.#timer = undefined;
    const conn = this.#connection;
    this.#connection = undefined;
    if (conn) await conn.close().catch(() => {});
  }
}

/** The socket under an amqplib connection (for its received byte count), if it exposes one. */
function socketOf(model: ChannelModel | undefined): { bytesRead: number; destroyed: boolean; destroy(err?: Error): void } | undefined {
  const stream = (model as unknown as { connection?: { stream?: unknown } } | undefined)?.connection?.stream as
    { bytesRead?: unknown; destroy?: unknown } | undefined;
  return stream && typeof stream.bytesRead === 'number' && typeof stream.destroy === 'function'
    ? (stream as { bytesRead: number; destroyed: boolean; destroy(err?: Error): void })
    : undefined;
}

/** Rejects after `ms`; a connection that arrives later is closed. */
function withTimeout(pending: Promise<ChannelModel>, ms: number): Promise<ChannelModel> {
  return new Promise((resolve, reject) => {
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      reject(new Error(`AMQP handshake not complete within ${ms} ms`));
    }, ms);
    pending.then(
      (conn) => {
        clearTimeout(timer);
        if (expired) {
          conn.on('error', () => {});
          void conn.close().catch(() => {});
        } else resolve(conn);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err as Error);
      },
    );
  });
}

/** Adds `heartbeat=<s>` to the URL unless it already sets one. */
export function withHeartbeat(url: string, heartbeatS: number): string {
  const u = new URL(url);
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(heartbeatS));
  return u.toString();
}
