import type { Duplex } from 'node:stream';
import type { RequestHandler } from 'express';
import { GatewayError, toProblem, type ErrorCode } from '../../shared/errors.ts';

/** Node's parser error codes → our registry (everything else the parser rejects is a 400). */
function codeFor(err: { code?: string }): ErrorCode {
  if (err.code === 'HPE_HEADER_OVERFLOW') return 'GW_ERR_HEADERS_TOO_LARGE';
  if (err.code === 'HPE_URI_TOO_LONG') return 'GW_ERR_URI_TOO_LONG';
  return 'GW_ERR_BAD_REQUEST';
}

const REASON: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 414: 'URI Too Long', 431: 'Request Header Fields Too Large' };

/**
 * `server.on('clientError')`: requests Node's HTTP parser refuses (oversized head, CR/LF or NUL in
 * the request line or headers, obs-fold, malformed chunking, header timeout) never reach Express;
 * answer them with the same problem+json as everything else, then close the connection (the parser
 * state is broken, so nothing more can be read from it).
 */
export function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  const { problem } = toProblem(timeout ? new GatewayError('GW_ERR_BAD_REQUEST', 'request not received in time') : new GatewayError(codeFor(err), parserDetail(err)));
  const status = timeout ? 408 : problem.status;
  if (timeout) problem.status = 408;
  const body = JSON.stringify(problem);
  socket.end(
    `HTTP/1.1 ${status} ${REASON[status] ?? 'Bad Request'}\r\ncontent-type: application/problem+json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function parserDetail(err: { code?: string }): string {
  return err.code === 'HPE_HEADER_OVERFLOW' ? 'request head too large' : `malformed HTTP request (${err.code ?? 'parse error'})`;
}

/**
 * Limits Node does not enforce on its own: header field count (431; the server's `maxHeadersCount`
 * is set one above, so an overflow is visible here instead of silently truncated) and the request
 * target length (414).
 */
export function inputLimits(limits: { maxHeaderCount: number; maxUrlBytes: number }): RequestHandler {
  return (req, _res, next) => {
    if (req.rawHeaders.length / 2 > limits.maxHeaderCount) {
      next(new GatewayError('GW_ERR_HEADERS_TOO_LARGE', `more than ${limits.maxHeaderCount} header fields`));
    } else if (req.url.length > limits.maxUrlBytes) {
      next(new GatewayError('GW_ERR_URI_TOO_LONG', `request target longer than ${limits.maxUrlBytes} bytes`));
    } else {
      next();
    }
  };
}
