import { describe, expect, it } from 'vitest';
import { decide, parseRetryAfterS } from '../../dequeuer/classify.ts';

const policy = { maxAttempts: 5, baseMs: 200, capMs: 5000, networkBaseMs: 2000, retryableStatus: [408, 429, 500, 502, 503, 504] };

describe('retry classification table', () => {
  it.each([200, 201, 204, 301, 304])('status %i succeeds', (status) => {
    expect(decide({ kind: 'response', status }, 1, policy)).toEqual({ action: 'succeed' });
  });
  it.each([400, 401, 403, 404, 409, 422, 501])('status %i is permanent: dead-lettered after one attempt', (status) => {
    expect(decide({ kind: 'response', status }, 1, policy)).toEqual({ action: 'dead', reason: 'permanent' });
  });
  it.each([408, 429, 500, 502, 503, 504])('status %i is retried while attempts remain', (status) => {
    expect(decide({ kind: 'response', status }, 4, policy).action).toBe('retry');
    expect(decide({ kind: 'response', status }, 5, policy)).toEqual({ action: 'dead', reason: 'exhausted' });
  });
  it('retries timeouts and network errors; an invalid response is permanent', () => {
    expect(decide({ kind: 'failure', failure: 'timeout' }, 1, policy).action).toBe('retry');
    expect(decide({ kind: 'failure', failure: 'network' }, 1, policy).action).toBe('retry');
    expect(decide({ kind: 'failure', failure: 'bad_response' }, 1, policy)).toEqual({ action: 'dead', reason: 'permanent' });
  });
  it('draws the delay with full jitter under min(cap, base·2^(attempt-1))', () => {
    expect(decide({ kind: 'response', status: 503 }, 1, policy, () => 0.999)).toEqual({ action: 'retry', delayMs: 200 });
    expect(decide({ kind: 'response', status: 503 }, 3, policy, () => 0.5)).toEqual({ action: 'retry', delayMs: 400 });
    expect(decide({ kind: 'response', status: 503 }, 4, policy, () => 0)).toEqual({ action: 'retry', delayMs: 0 });
    expect(decide({ kind: 'response', status: 503 }, 4, { ...policy, capMs: 1000 }, () => 1)).toEqual({ action: 'retry', delayMs: 1000 });
  });
  it('backs off network errors from the upper half of a backoff on networkBaseMs (5 attempts span ≥ 15 s)', () => {
    const network = { kind: 'failure', failure: 'network' } as const;
    expect(decide(network, 1, policy, () => 0)).toEqual({ action: 'retry', delayMs: 1000 });
    expect(decide(network, 1, policy, () => 1)).toEqual({ action: 'retry', delayMs: 2000 });
    const defaults = { ...policy, capMs: 30_000 };
    const floor = [1, 2, 3, 4].reduce((sum, attempt) => sum + (decide(network, attempt, defaults, () => 0) as { delayMs: number }).delayMs, 0);
    expect(floor).toBe(15_000);
    // Timeouts keep the ordinary full-jitter backoff.
    expect(decide({ kind: 'failure', failure: 'timeout' }, 1, policy, () => 0.999)).toEqual({ action: 'retry', delayMs: 200 });
  });
  it('hands a job back without spending an attempt when the call was the half-open probe or the breaker is open after it', () => {
    for (const outcome of [{ kind: 'failure', failure: 'network' }, { kind: 'failure', failure: 'timeout' }, { kind: 'response', status: 503 }] as const) {
      expect(decide(outcome, 5, policy, Math.random, { probe: true, openAfter: false })).toEqual({ action: 'handBack' });
      expect(decide(outcome, 5, policy, Math.random, { probe: false, openAfter: true })).toEqual({ action: 'handBack' });
      expect(decide(outcome, 5, policy, Math.random, { probe: false, openAfter: false })).toEqual({ action: 'dead', reason: 'exhausted' });
    }
    // The job's own failures still count: a 4xx, an invalid response, a 429 (not a breaker failure).
    expect(decide({ kind: 'response', status: 400 }, 1, policy, Math.random, { probe: true, openAfter: true })).toEqual({ action: 'dead', reason: 'permanent' });
    expect(decide({ kind: 'failure', failure: 'bad_response' }, 1, policy, Math.random, { probe: true, openAfter: true })).toEqual({ action: 'dead', reason: 'permanent' });
    expect(decide({ kind: 'response', status: 429 }, 5, policy, Math.random, { probe: false, openAfter: true })).toEqual({ action: 'dead', reason: 'exhausted' });
    expect(decide({ kind: 'response', status: 200 }, 1, policy, Math.random, { probe: true, openAfter: true })).toEqual({ action: 'succeed' });
  });
  it('never retries earlier than Retry-After', () => {
    expect(decide({ kind: 'response', status: 429, retryAfterS: 2 }, 1, policy, () => 0)).toEqual({ action: 'retry', delayMs: 2000 });
  });
  it('parses Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfterS('3')).toBe(3);
    expect(parseRetryAfterS(new Date(10_000).toUTCString(), 0)).toBe(10);
    expect(parseRetryAfterS('soon')).toBeUndefined();
  });
});
