import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../../shared/errors.ts';

/** Longest forwarded path + query accepted (bytes of the raw URL); the server's MAX_URL_BYTES is usually lower. */
export const MAX_FORWARD_URL_LENGTH = 64 * 1024;

// Control characters, backslash, and anything that is not a valid URL path character.
/* eslint-disable no-control-regex */
const BAD_RAW = /[\u0000-\u001f\u007f\\\s]/;
const BAD_DECODED = /[\u0000-\u001f\u007f\\\s]/;
/* eslint-enable no-control-regex */

/** Percent-decoding rounds before a path that still changes counts as hostile. */
const MAX_DECODE_ROUNDS = 8;

/**
 * Splits the raw request URL into the path forwarded downstream and its query, and rejects any
 * path that could leave the configured origin or confuse it: `//` anywhere, dot segments (also
 * behind a `;`-parameter, which Tomcat, Spring and Jetty strip: `..;` is `..` to them), backslashes,
 * control characters and spaces, `@` in the first segment. Every check runs on the raw path and on
 * each percent-decoding of it until decoding no longer changes it.
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
  let decoded = path;
  for (let round = 0; ; round++) {
    checkDecodedPath(decoded);
    if (!decoded.includes('%')) break;
    if (round === MAX_DECODE_ROUNDS) throw new GatewayError('GW_ERR_PATH_INVALID', 'percent-encoded too many times');
    let next: string;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      throw new GatewayError('GW_ERR_PATH_INVALID', 'malformed percent-encoding');
    }
    if (next === decoded) break;
    decoded = next;
  }
  return { path, query };
}

/** The checks every decoding of the path must pass. */
function checkDecodedPath(decoded: string): void {
  if (BAD_DECODED.test(decoded)) throw new GatewayError('GW_ERR_PATH_INVALID', 'encoded control characters, spaces or backslashes');
  if (decoded.includes('//')) throw new GatewayError('GW_ERR_PATH_INVALID', 'empty path segment (//)');
  const segments = decoded.split('/');
  for (const segment of segments) {
    // `..;x` is `..` to servlet containers: the dot test applies to the segment before any `;`.
    const name = segment.split(';', 1)[0]!;
    if (name === '..' || name === '.') throw new GatewayError('GW_ERR_PATH_INVALID', 'dot segments are not allowed');
  }
  if ((segments[1] ?? '').includes('@')) throw new GatewayError('GW_ERR_PATH_INVALID', '@ in the first path segment');
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

// W3C Trace Context level 1, 3.3.1: `key = simple-key / tenant-id "@" system-id`, value of printable
// ASCII without `,` and `=`, not ending in a space.
const TRACESTATE_KEY = /^(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
/** Most list members and characters of a propagated `tracestate` (W3C: at least 32 members / 512 chars). */
const TRACESTATE_MAX_MEMBERS = 32;
const TRACESTATE_MAX_LENGTH = 512;

/**
 * The `tracestate` to propagate: the members that parse (W3C grammar), the first of each key, at
 * most 32 and 512 characters, whole members only (members over 128 characters go first, as the
 * spec asks); undefined when nothing is left.
 */
export function validTracestate(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const raw = Array.isArray(value) ? value.join(',') : value;
  // Bound the work on a hostile header before splitting it.
  if (raw.length > 8192) return undefined;
  const seen = new Set<string>();
  const members: string[] = [];
  for (const part of raw.split(',')) {
    const member = part.replace(/^[ \t]+|[ \t]+$/g, '');
    if (member === '') continue;
    const eq = member.indexOf('=');
    if (eq <= 0) continue;
    const key = member.slice(0, eq);
    const val = member.slice(eq + 1);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(val) || seen.has(key)) continue;
    seen.add(key);
    members.push(member);
    if (members.length === TRACESTATE_MAX_MEMBERS) break;
  }
  const length = (): number => members.reduce((n, m) => n + m.length, 0) + Math.max(0, members.length - 1);
  for (let i = members.length - 1; i >= 0 && length() > TRACESTATE_MAX_LENGTH; i--) if (members[i]!.length > 128) members.splice(i, 1);
  while (length() > TRACESTATE_MAX_LENGTH) members.pop();
  return members.length ? members.join(',') : undefined;
}

/** AMQP short strings (every basic property, `content-type` among them) hold at most 255 bytes. */
export const AMQP_SHORT_STRING_BYTES = 255;
// A header value of visible ASCII, spaces and tabs (RFC 9110 field-value without obs-text).
const CONTENT_TYPE = /^[\x21-\x7e][\x20-\x7e\t]*$/;

/**
 * A forwarded `Content-Type` becomes the AMQP `content-type` property: one the broker (amqplib)
 * cannot encode is refused here with a 415 problem instead of failing the publish.
 */
export function assertAmqpContentType(value: string | undefined): void {
  if (value === undefined) return;
  if (Buffer.byteLength(value, 'utf8') > AMQP_SHORT_STRING_BYTES || !CONTENT_TYPE.test(value)) {
    throw new GatewayError('GW_ERR_CONTENT_TYPE_INVALID', `Content-Type must be at most ${AMQP_SHORT_STRING_BYTES} bytes of visible ASCII`);
  }
}
