import { connect } from 'node:net';

/** What came back on a raw socket: a parsed response, or how the connection ended without one. */
export interface RawAnswer {
  status?: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Every byte received (several answers when requests were pipelined). */
  raw: Buffer;
  /** 'response' (a full status line came back), 'closed' (closed without a response), 'timeout'. */
  end: 'response' | 'closed' | 'timeout';
  ms: number;
}

/**
 * Writes `chunks` to a fresh TCP connection (with `gapMs` between them), half-closes if asked
 * (Node's server then drops the connection), and reads until the server closes or `timeoutMs` passes. For requests fetch cannot
 * express: CR/LF/NUL in heads, obs-fold, lying lengths, slow bodies, non-HTTP bytes.
 */
export function rawRequest(port: number, chunks: Array<string | Buffer>, options: { timeoutMs?: number; gapMs?: number; halfClose?: boolean } = {}): Promise<RawAnswer> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const received: Buffer[] = [];
    let done = false;
    const finish = (end: RawAnswer['end']): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(received);
      resolve({ ...parseResponse(raw, end), raw, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish('timeout'), options.timeoutMs ?? 5000);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('end', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('error', () => finish('closed'));
    socket.on('connect', async () => {
      for (const [i, chunk] of chunks.entries()) {
        if (i > 0 && options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
        if (done || socket.destroyed) return;
        socket.write(chunk);
      }
      if (options.halfClose && !socket.destroyed) socket.end();
    });
  });
}

function parseResponse(all: Buffer, end: RawAnswer['end']): Omit<RawAnswer, 'ms' | 'raw'> {
  let buf = all;
  // Skip interim 1xx responses (100 Continue) to the final one.
  while (/^HTTP\/1\.[01] 1\d\d/.test(buf.subarray(0, 16).toString('latin1')) && buf.indexOf('\r\n\r\n') !== -1) buf = buf.subarray(buf.indexOf('\r\n\r\n') + 4);
  const headEnd = buf.indexOf('\r\n\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf.subarray(0, 32).toString('latin1'));
  if (headEnd === -1 || !m) return { headers: {}, body: buf, end };
  const headers: Record<string, string> = {};
  for (const line of buf.subarray(0, headEnd).toString('latin1').split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = buf.subarray(headEnd + 4);
  if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status: Number(m[1]), headers, body, end: 'response' };
}
