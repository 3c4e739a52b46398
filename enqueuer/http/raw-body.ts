import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../../shared/errors.ts';

const EMPTY = Buffer.alloc(0);

/**
 * Reads the request body as raw bytes, bounded by `limitBytes` (413 beyond it, before reading when
 * Content-Length already says so). Compressed bodies are refused (415): an inflated size would not
 * be bounded by what was read.
 */
export function readRawBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    return Promise.reject(new GatewayError('GW_ERR_UNSUPPORTED_ENCODING', 'compressed request bodies are not accepted'));
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limitBytes) {
    return Promise.reject(new GatewayError('GW_ERR_BODY_TOO_LARGE', `body exceeds ${limitBytes} bytes`));
  }
  if (declared === '0' || (declared === undefined && req.headers['transfer-encoding'] === undefined)) return Promise.resolve(EMPTY);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) {
        cleanup();
        req.pause();
        reject(new GatewayError('GW_ERR_BODY_TOO_LARGE', `body exceeds ${limitBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new GatewayError('GW_ERR_BAD_REQUEST', 'request body could not be read', { cause: err }));
    };
    const onAborted = (): void => onError(new Error('aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}
