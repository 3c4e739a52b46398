import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../../shared/errors.ts';

/** Request header: run the job after this many milliseconds (a non-negative integer). */
export const DELAY_HEADER = 'gw-delay-ms';
/** Request header: run the job no earlier than this instant (RFC 3339 with a zone, or an HTTP-date). */
export const NOT_BEFORE_HEADER = 'gw-not-before';

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;
const HTTP_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * True when the calendar fields name a real instant: `Date.parse` rolls `2030-02-30` over to
 * March 2, so the fields are checked against the date they produce. Leap seconds (`:60`) are refused.
 */
function realDate(year: number, month: number, day: number, hour: number, minute: number, second: number): boolean {
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false;
  const d = new Date(Date.UTC(year, month - 1, day));
  return d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day;
}

/** The instant of a `Gw-Not-Before` value, or NaN when it is malformed or impossible. */
function parseNotBefore(value: string): number {
  const r = RFC3339.exec(value);
  if (r) {
    const [, y, mo, d, h, mi, s, , , zh, zm] = r;
    if (!realDate(Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(s))) return NaN;
    if (zh !== undefined && (Number(zh) > 23 || Number(zm) > 59)) return NaN;
    return Date.parse(value);
  }
  const h = HTTP_DATE.exec(value);
  if (h) {
    const [, , d, mon, y, hh, mi, s] = h;
    if (!realDate(Number(y), MONTHS.indexOf(mon!) + 1, Number(d), Number(hh), Number(mi), Number(s))) return NaN;
    return Date.parse(value);
  }
  return NaN;
}

/**
 * The delay an async job asks for, in ms from `nowMs`, or undefined when it asks for none.
 * `Gw-Delay-Ms: 1500` or `Gw-Not-Before: 2030-01-01T00:00:00Z` (or an HTTP-date); a time in the
 * past means "now". Both headers at once, a malformed value or a delay over `maxDelayMs` → 400
 * (`GW_ERR_DELAY_INVALID`). Pure: the caller passes the clock and the bound (`maxDelayMs(topology)`).
 */
export function parseDelay(headers: IncomingHttpHeaders, nowMs: number, maxDelayMs: number): number | undefined {
  const delay = single(headers[DELAY_HEADER], DELAY_HEADER);
  const notBefore = single(headers[NOT_BEFORE_HEADER], NOT_BEFORE_HEADER);
  if (delay !== undefined && notBefore !== undefined) {
    throw new GatewayError('GW_ERR_DELAY_INVALID', `send either ${DELAY_HEADER} or ${NOT_BEFORE_HEADER}, not both`);
  }
  let delayMs: number;
  if (delay !== undefined) {
    if (!/^\d{1,16}$/.test(delay)) throw new GatewayError('GW_ERR_DELAY_INVALID', `${DELAY_HEADER} must be a non-negative integer (milliseconds)`);
    delayMs = Number(delay);
  } else if (notBefore !== undefined) {
    if (!RFC3339.test(notBefore) && !HTTP_DATE.test(notBefore)) {
      throw new GatewayError('GW_ERR_DELAY_INVALID', `${NOT_BEFORE_HEADER} must be an RFC 3339 date-time with a zone or an HTTP-date`);
    }
    const at = parseNotBefore(notBefore);
    if (Number.isNaN(at)) throw new GatewayError('GW_ERR_DELAY_INVALID', `${NOT_BEFORE_HEADER} is not a real date (day, hour or zone out of range)`);
    delayMs = Math.max(0, at - nowMs);
  } else {
    return undefined;
  }
  if (delayMs > maxDelayMs) {
    throw new GatewayError('GW_ERR_DELAY_INVALID', `delay of ${delayMs} ms exceeds the maximum of ${maxDelayMs} ms`, { extra: { maxDelayMs } });
  }
  return delayMs;
}

function single(value: string | string[] | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    if (value.length !== 1) throw new GatewayError('GW_ERR_DELAY_INVALID', `${name} given more than once`);
    value = value[0]!;
  }
  return value.trim();
}
