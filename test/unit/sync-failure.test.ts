import { describe, expect, it } from 'vitest';
import { DownstreamError } from '../../dequeuer/downstream.ts';
import { failureReply, syncFailure } from '../../dequeuer/rpc-handler.ts';
import { ERRORS } from '../../shared/errors.ts';

const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
const reset = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
const downstream = (state: 'open' | 'closed' | 'half-open') => ({ service: 'echo', state, retryAfterS: () => 4 });

/** What a sync caller is told for a failed call (issue 15: no 502 while a refused streak opens the breaker). */
describe('sync failure replies', () => {
  it('a refused connection with the breaker still closed: 503 refused, Retry-After 1 (nothing was sent)', () => {
    const de = syncFailure(new DownstreamError('network', refused.message, { cause: refused }), downstream('closed'));
    const reply = failureReply(de);
    expect(reply.error).toMatchObject({ code: 'GW_ERR_DOWNSTREAM_REFUSED', retryAfterS: 1 });
    expect(ERRORS.GW_ERR_DOWNSTREAM_REFUSED.status).toBe(503);
  });
  it('a refusal wrapped by undici (AggregateError errors[]) counts as refused too', () => {
    const agg = Object.assign(new AggregateError([refused], 'connect failed'), { code: 'ECONNREFUSED' });
    expect(syncFailure(new DownstreamError('network', 'x', { cause: { cause: agg } }), downstream('closed')).kind).toBe('refused');
  });
  it('a network failure or timeout after which the breaker is open: 503 breaker-open with its Retry-After', () => {
    for (const de of [new DownstreamError('network', 'x', { cause: refused }), new DownstreamError('timeout', 'x')]) {
      expect(failureReply(syncFailure(de, downstream('open'))).error).toMatchObject({ code: 'GW_ERR_BREAKER_OPEN', retryAfterS: 4 });
    }
  });
  it('a reset mid-answer stays 502 unavailable (the downstream may have run it); a timeout stays 504', () => {
    expect(failureReply(syncFailure(new DownstreamError('network', 'x', { cause: reset }), downstream('closed'))).error?.code).toBe('GW_ERR_DOWNSTREAM_UNAVAILABLE');
    expect(failureReply(syncFailure(new DownstreamError('timeout', 'x'), downstream('half-open'))).error?.code).toBe('GW_ERR_DOWNSTREAM_TIMEOUT');
  });
});
