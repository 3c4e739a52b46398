import { GatewayError } from '../../shared/errors.ts';

/** What the client asked for with RFC 7240 `Prefer`. */
export interface Preferences {
  respondAsync: boolean;
  /** `wait=N` in seconds, if given. */
  waitS?: number;
}

const WAIT = /^wait=(\d{1,9})$/i;

/**
 * Parses `Prefer` (possibly repeated or comma-separated). Unknown preferences are ignored as
 * RFC 7240 says; a malformed `wait` is a 400 so a client learns its wait was not applied.
 */
export function parsePrefer(header: string | string[] | undefined): Preferences {
  const out: Preferences = { respondAsync: false };
  if (header === undefined) return out;
  const parts = (Array.isArray(header) ? header.join(',') : header).split(/[,;]/);
  for (const raw of parts) {
    const token = raw.trim();
    if (token === '') continue;
    const lower = token.toLowerCase();
    if (lower === 'respond-async') out.respondAsync = true;
    else if (lower.startsWith('wait')) {
      const m = WAIT.exec(token.replaceAll(' ', ''));
      const n = m ? Number(m[1]) : NaN;
      if (!Number.isSafeInteger(n) || n < 1) throw new GatewayError('GW_ERR_PREFER_INVALID', 'wait must be a whole number of seconds ≥ 1');
      out.waitS = n;
    }
  }
  return out;
}
