/** What the client asked for with RFC 7240 `Prefer`. */
export interface Preferences {
  respondAsync: boolean;
  /** `wait=N` in seconds, if given (and honourable). */
  waitS?: number;
}

const WAIT = /^wait\s*=\s*"?(\d{1,9})"?$/i;

/**
 * Parses `Prefer` (possibly repeated or comma-separated). RFC 7240 §2: a preference the server does
 * not understand or cannot honour is ignored, never refused: unknown names (`waitress=1`,
 * `handling=lenient`) and a `wait` that is not a whole number of seconds ≥ 1 are skipped, and
 * `Preference-Applied` tells the client what was applied.
 */
export function parsePrefer(header: string | string[] | undefined): Preferences {
  const out: Preferences = { respondAsync: false };
  if (header === undefined) return out;
  // Parameters (after `;`) are read as preferences too, so `respond-async; wait=5` also works.
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(/[,;]/)) {
    const token = part.trim();
    const lower = token.toLowerCase();
    if (lower === 'respond-async') {
      out.respondAsync = true;
      continue;
    }
    const m = WAIT.exec(token);
    if (!m) continue;
    const n = Number(m[1]);
    if (Number.isSafeInteger(n) && n >= 1) out.waitS = n;
  }
  return out;
}
