import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../../shared/errors.ts';

/** Longest forwarded path + query accepted (bytes of the raw URL); the server's MAX_URL_BYTES is usually lower. */
export const MAX_FORWARD_URL_LENGTH = 64 * 1024;

// Control characters, backslash, and anything that is not a valid URL path character.
/* eslint-disable no-control-regex */
const BAD_RAW = /[\u0000-\u001f\u007f\\\s]/;
const BAD_DECODED = /[\u0000-\u001f\u007f\\]/;
/* eslint-enable no-control-regex */

/**
 * Splits the raw request URL into the path forwarded downstream and its query, and rejects any
 * path that could leave the configured origin or confuse it: `//`, dot segments (also when
 * percent-encoded, once or twice), backslashes, control characters, `@` before the first `/`.
 */
export function forwardedTarget(rawUrl: string, mountPrefix: string): { path: string; query: string } {
  if (rawUrl.length > MAX_FORWARD_URL_LENGTH + mountPrefix.length) throw new GatewayError('GW_ERR_URI_TOO_LONG');
  const q = rawUrl.indexOf('?');
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const query = q === -1 ? '' : rawUrl.slice(q + 1);
  if (!rawPath.startsWith(mountPrefix)) throw new GatewayError('GW_ERR_PATH_INVALID');
  const path = rawPath.slice(mountPrefix.length) || '/';
  if (!path.startsWith('/')) throw new GatewayError('GW_ERR_PATH_INVALID', 'path must start with /');
  if (BAD_RAW.test(path) || BAD_RAW.test(query)) throw new GatewayError('GW_ERR_PATH_INVALID', 'control characters, spaces or backslashes in the URL');
  if (path.startsWith('//')) throw new GatewayError('GW_ERR_PATH_INVALID', 'path must not start with //');
  let decoded = path;
  for (let i = 0; i < 3 && decoded.includes('%'); i++) {
    try {
      decoded = decodeURIComponent(decoded);
    } catch {
      throw new GatewayError('GW_ERR_PATH_INVALID', 'malformed percent-encoding');
    }
  }
  if (BAD_DECODED.test(decoded)) throw new GatewayError('GW_ERR_PATH_INVALID', 'encoded control characters or backslashes');
  if (decoded.startsWith('//') || decoded.includes('://')) throw new GatewayError('GW_ERR_PATH_INVALID', 'absolute URL in path');
  for (const segment of decoded.split('/')) {
    if (segment === '..' || segment === '.') throw new GatewayError('GW_ERR_PATH_INVALID', 'dot segments are not allowed');
  }
  const firstSegment = decoded.split('/')[1] ?? '';
  if (firstSegment.includes('@')) throw new GatewayError('GW_ERR_PATH_INVALID', '@ in the first path segment');
  return { path, query };
}

/** The allow-listed request headers, lower-case, single-valued, length-capped. */
export function pickHeaders(headers: IncomingHttpHeaders, allow: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of allow) {
    const v = headers[name];
    if (v === undefined) continue;
    const value = Array.isArray(v) ? v.join(', ') : v;
    if (value.length > 8192) throw new GatewayError('GW_ERR_HEADERS_TOO_LARGE', `header ${name} too long`);
    out[name] = value;
  }
  return out;
}

const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

/** A W3C `traceparent` (version 00) if well-formed; a malformed one is dropped, as the spec says. */
export function validTraceparent(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && TRACEPARENT.test(value) ? value : undefined;
}
