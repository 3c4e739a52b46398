import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A downstream that answers with broken HTTP, chosen by the request path's first segment:
 * crlf-header, nul-header, status-999, status-600, status-099, big (2 MiB), reset (dies mid-body),
 * drip (1 byte every 200 ms), redirect (to another host), bad-length, two-lengths, garbage,
 * http09, close, huge-headers. Raw sockets, because no HTTP server library would send these.
 */
export class HostileDownstream {
  readonly server: Server;
  readonly seen: string[] = [];
  #sockets = new Set<Socket>();

  constructor() {
    this.server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
      let head = '';
      socket.on('data', (d: Buffer) => {
        if (head.includes('\r\n\r\n')) return;
        head += d.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const path = head.split(' ')[1] ?? '/';
        const kind = path.split('/')[1] ?? '';
        this.seen.push(kind);
        this.#answer(kind, socket);
      });
    });
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  listen(): Promise<this> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(this)));
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  #answer(kind: string, s: Socket): void {
    const ok = (extra: string, body = 'ok'): void => {
      s.end(`HTTP/1.1 200 OK\r\n${extra}content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    };
    switch (kind) {
      case 'crlf-header': return ok('content-type: text/plain\rx-injected: yes\r\n');
      case 'nul-header': return ok('content-type: text/pl\0ain\r\n');
      case 'obs-fold': return ok('content-type: text/plain\r\n folded: yes\r\n');
      case 'status-999': return void s.end('HTTP/1.1 999 Nope\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
      case 'status-600': return void s.end('HTTP/1.1 600 Nope\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
      case 'status-099': return void s.end('HTTP/1.1 099 Nope\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
      case 'status-abc': return void s.end('HTTP/1.1 abc Nope\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
      case 'big': {
        s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${2 * 1024 * 1024}\r\nconnection: close\r\n\r\n`);
        s.end(Buffer.alloc(2 * 1024 * 1024, 0x61));
        return;
      }
      case 'reset': {
        s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\npartial');
        setTimeout(() => s.resetAndDestroy(), 50);
        return;
      }
      case 'drip': {
        s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n');
        const timer = setInterval(() => (s.destroyed ? clearInterval(timer) : s.write('x')), 200);
        s.on('close', () => clearInterval(timer));
        return;
      }
      case 'redirect': return void s.end('HTTP/1.1 302 Found\r\nlocation: http://evil.example/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      case 'bad-length': return void s.end('HTTP/1.1 200 OK\r\ncontent-length: abc\r\nconnection: close\r\n\r\nok');
      case 'two-lengths': return void s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\nconnection: close\r\n\r\nok');
      case 'garbage': return void s.end('\u0000\u0001 not http at all\r\n\r\n');
      case 'http09': return void s.end('just a body, no status line');
      case 'close': return void s.destroy();
      case 'huge-headers': return ok(`x-big: ${'a'.repeat(100 * 1024)}\r\n`);
      default: return ok('content-type: text/plain\r\n');
    }
  }
}

/** The hostile reply kinds, for tests to iterate. */
export const HOSTILE_REPLY_KINDS = [
  'crlf-header', 'nul-header', 'obs-fold', 'status-999', 'status-600', 'status-099', 'status-abc', 'big', 'reset', 'drip',
  'redirect', 'bad-length', 'two-lengths', 'garbage', 'http09', 'close', 'huge-headers',
] as const;
