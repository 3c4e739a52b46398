import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RequestHandler } from 'express';
import { GatewayError, type ErrorCode } from '../../shared/errors.ts';
import { writeProblem, writeProblemToSocket } from '../../shared/http-problem.ts';

/** Node's parser error codes → our registry (everything else the parser rejects is a 400). */
function codeFor(err: { code?: string }): ErrorCode {
  if (err.code === 'HPE_HEADER_OVERFLOW') return 'GW_ERR_HEADERS_TOO_LARGE';
  if (err.code === 'HPE_URI_TOO_LONG') return 'GW_ERR_URI_TOO_LONG';
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'GW_ERR_REQUEST_TIMEOUT';
  return 'GW_ERR_BAD_REQUEST';
}

/**
 * `server.on('clientError')`: requests Node's HTTP parser refuses (oversized head, CR/LF or NUL in
 * the request line or headers, obs-fold, malformed chunking, header timeout) never reach Express;
 * answer them with the same problem+json as everything else (the one writer of shared/errors.ts),
 * then close the connection (the parser state is broken, so nothing more can be read from it).
 */
export function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  writeProblemToSocket(socket, new GatewayError(codeFor(err), parserDetail(err)));
}

/** `server.on('connect')`: the gateway is no proxy; CONNECT gets a 405 problem instead of a silent close. */
export function onConnectMethod(_req: IncomingMessage, socket: Duplex): void {
  socket.on('error', () => socket.destroy());
  writeProblemToSocket(socket, new GatewayError('GW_ERR_METHOD_NOT_ALLOWED', 'CONNECT is not supported'));
}

function parserDetail(err: { code?: string }): string {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'request not received in time';
  return err.code === 'HPE_HEADER_OVERFLOW' ? 'request head too large' : `malformed HTTP request (${err.code ?? 'parse error'})`;
}

/**
 * `server.on('checkExpectation')`: an `Expect` other than `100-continue` is a 417 problem (Node's own
 * answer would be a bare 417).
 */
export function onCheckExpectation(_req: IncomingMessage, res: ServerResponse): void {
  writeProblem(res, new GatewayError('GW_ERR_EXPECTATION_FAILED'), { close: true });
}

/**
 * Limits Node does not enforce on its own: header field count (431; the server's `maxHeadersCount`
 * is set one above, so an overflow is visible here instead of silently truncated) and the request
 * target length (414).
 */
export function inputLimits(limits: { maxHeaderCount: number; maxUrlBytes: number }): RequestHandler {
  return (req, _res, next) => {
    // Node's own check would answer a bare 400, so the server runs with requireHostHeader off.
    if (req.headers.host === undefined && req.httpVersionMinor === 1) {
      next(new GatewayError('GW_ERR_BAD_REQUEST', 'HTTP/1.1 request without Host'));
    } else if (req.rawHeaders.length / 2 > limits.maxHeaderCount) {
      next(new GatewayError('GW_ERR_HEADERS_TOO_LARGE', `more than ${limits.maxHeaderCount} header fields`));
    } else if (req.url.length > limits.maxUrlBytes) {
      next(new GatewayError('GW_ERR_URI_TOO_LONG', `request target longer than ${limits.maxUrlBytes} bytes`));
    } else {
      next();
    }
  };
}
