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

/** What the server still owes one connection: requests being answered, whether an answer said close, a deferred parser-error answer. */
interface ConnectionState {
  open: Set<IncomingMessage>;
  closing: boolean;
  deferred: (() => void) | undefined;
}
const connections = new WeakMap<object, ConnectionState>();

function stateOf(socket: object): ConnectionState {
  let c = connections.get(socket);
  if (!c) connections.set(socket, (c = { open: new Set(), closing: false, deferred: undefined }));
  return c;
}

/**
 * `server.prependListener('request')`: counts the responses in progress per connection, so a parser
 * error on a pipelined request behind them is answered after them (in order), and notes a response
 * that said `Connection: close`.
 */
export function trackResponse(req: IncomingMessage, res: ServerResponse): void {
  // req.socket: a pipelined request's response gets its socket only once the one before it is done.
  const c = stateOf(req.socket);
  c.open.add(req);
  res.once('close', () => {
    c.open.delete(req);
    if (String(res.getHeader('connection') ?? '').toLowerCase() === 'close') c.closing = true;
    if (c.open.size === 0 && c.deferred) {
      const answer = c.deferred;
      c.deferred = undefined;
      answer();
    }
  });
}

/**
 * `server.on('clientError')`: requests Node's HTTP parser refuses (oversized head, CR/LF or NUL in
 * the request line or headers, obs-fold, malformed chunking, header timeout) never reach Express;
 * answer them with the same problem+json as everything else (the one writer of shared/errors.ts),
 * then close the connection (the parser state is broken, so nothing more can be read from it).
 * HTTP answers in request order: behind requests received whole and still being answered (bytes
 * pipelined after a request, e.g. an unframed GET body), the problem waits for them; after a response
 * that said `Connection: close`, nothing more is answered (RFC 9112 §9.6), the connection just ends.
 */
export function onClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const c = stateOf(socket);
  const answer = (): void => {
    if (!socket.writable) socket.destroy();
    else if (c.closing) socket.end();
    else writeProblemToSocket(socket, new GatewayError(codeFor(err), parserDetail(err)));
  };
  // A request still being received (a body timing out, malformed chunking) is the one the error is
  // about: answered now. Only when every request in progress was received whole is it a later one.
  if (c.open.size > 0 && [...c.open].every((req) => req.complete)) c.deferred = answer;
  else answer();
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
export function onCheckExpectation(req: IncomingMessage, res: ServerResponse): void {
  // No 'request' event for this one: the connection is marked closing here.
  stateOf(req.socket).closing = true;
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
