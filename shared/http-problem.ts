import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { problemResponse } from './errors.ts';

/** Writes a problem answer on a Node/Express response (headers not sent yet). */
export function writeProblem(res: ServerResponse, err: unknown, options: { requestId?: string | undefined; close?: boolean } = {}): void {
  const answer = problemResponse(err, options);
  res.statusCode = answer.status;
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  res.end(answer.body);
}

/**
 * Writes a problem answer straight onto a socket and closes it: for requests Node's HTTP parser
 * refused (or CONNECT), which never get a response object.
 */
export function writeProblemToSocket(socket: Duplex, err: unknown): void {
  const answer = problemResponse(err, { close: true });
  const head = Object.entries(answer.headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.end(`HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}\r\n${head}\r\n${answer.body}`);
}
