import { fullJitterDelayMs } from '../shared/backoff.ts';
import type { ServiceConfig } from '../shared/config/services.ts';

/** What one attempt produced. */
export type AttemptOutcome =
  | { kind: 'response'; status: number; retryAfterS?: number }
  | { kind: 'failure'; failure: 'timeout' | 'network' | 'bad_response' };

/** What to do with the job after an attempt. */
export type Decision =
  | { action: 'succeed' }
  | { action: 'retry'; delayMs: number }
  | { action: 'dead'; reason: 'permanent' | 'exhausted' }
  /** Not the job's failure: it goes back with the attempt it had (the downstream as a whole is down). */
  | { action: 'handBack' };

/** The breaker around the call that produced the outcome. */
export interface BreakerContext {
  /** The call was the half-open breaker's probe. */
  probe: boolean;
  /** The breaker is open now that the call has ended (this failure or another one opened it). */
  openAfter: boolean;
}

/** Longest `Retry-After` honoured (ms); a downstream cannot park a job for days. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * The retry table, pure. Success: 2xx/3xx. Retryable: network errors, timeouts and the policy's
 * statuses (5xx, 408, 429 by default). Permanent: every other status and invalid responses.
 * The delay is full-jitter exponential backoff, but never shorter than the downstream's `Retry-After`;
 * after a network error (nothing answered) it is drawn from the upper half of a backoff on
 * `networkBaseMs`, long enough to outlast a restart.
 *
 * An outage is not the job's fault: a failed half-open probe, or a failure after which the breaker
 * is open, hands the job back without spending an attempt, so a long outage dead-letters nothing.
 */
export function decide(
  outcome: AttemptOutcome,
  attempt: number,
  policy: ServiceConfig['retry'],
  random: () => number = Math.random,
  breaker: BreakerContext = { probe: false, openAfter: false },
): Decision {
  let retryable: boolean;
  let retryAfterMs = 0;
  if (outcome.kind === 'response') {
    if (outcome.status >= 200 && outcome.status < 400) return { action: 'succeed' };
    retryable = policy.retryableStatus.includes(outcome.status);
    if (outcome.retryAfterS !== undefined) retryAfterMs = Math.min(outcome.retryAfterS * 1000, MAX_RETRY_AFTER_MS);
  } else {
    retryable = outcome.failure !== 'bad_response';
  }
  if (!retryable) return { action: 'dead', reason: 'permanent' };
  if (countsForBreaker(outcome) && (breaker.probe || breaker.openAfter)) return { action: 'handBack' };
  if (attempt >= policy.maxAttempts) return { action: 'dead', reason: 'exhausted' };
  const backoffMs = outcome.kind === 'failure' && outcome.failure === 'network'
    ? fullJitterDelayMs(attempt - 1, policy.networkBaseMs, policy.capMs, 0.5, random)
    : fullJitterDelayMs(attempt - 1, policy.baseMs, policy.capMs, 0, random);
  return { action: 'retry', delayMs: Math.max(backoffMs, retryAfterMs) };
}

/** `Retry-After` as seconds (delta-seconds or HTTP-date), or undefined. */
export function parseRetryAfterS(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d{1,9}$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** Outcomes the breaker counts as the downstream failing (5xx, timeouts, network errors), not 4xx. */
function countsForBreaker(outcome: AttemptOutcome): boolean {
  return outcome.kind === 'failure' ? outcome.failure !== 'bad_response' : outcome.status >= 500;
}
