import { describe, expect, it } from 'vitest';
import { decide, parseRetryAfterS } from '../../dequeuer/classify.ts';

const policy = { maxAttempts: 5, baseMs: 200, capMs: 5000, retryableStatus: [408, 429, 500, 502, 503, 504] };

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
  it('never retries earlier than Retry-After', () => {
    expect(decide({ kind: 'response', status: 429, retryAfterS: 2 }, 1, policy, () => 0)).toEqual({ action: 'retry', delayMs: 2000 });
  });
  it('parses Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfterS('3')).toBe(3);
    expect(parseRetryAfterS(new Date(10_000).toUTCString(), 0)).toBe(10);
    expect(parseRetryAfterS('soon')).toBeUndefined();
  });
});
