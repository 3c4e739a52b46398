import { describe, expect, it } from 'vitest';
import { aimdLimit, aimdOverload, aimdSuccess, initialAimd, isOverloadSignal, type AimdSettings, type AimdState } from '../../dequeuer/pacing/aimd.ts';
import { ServicePacing } from '../../dequeuer/pacing/service-pacing.ts';

const s: AimdSettings = { floor: 1, ceiling: 40, decrease: 0.9 };

/**
 * A downstream that answers 503 above `capacity` concurrent calls, driven in rounds of one round
 * trip: every allowed call starts at the round's start.
 */
function simulate(capacity: number, rounds: number): { limits: number[]; served: number } {
  let state: AimdState = initialAimd(s);
  const limits: number[] = [];
  let served = 0;
  for (let t = 0; t < rounds; t++) {
    const calls = aimdLimit(state, s);
    for (let i = 0; i < calls; i++) {
      if (i < capacity) {
        state = aimdSuccess(state, s);
        served++;
      } else state = aimdOverload(state, s, t, t + 0.5);
    }
    limits.push(aimdLimit(state, s));
  }
  return { limits, served };
}

describe('AIMD limit (pure)', () => {
  it('slow-starts from half the ceiling, then settles just above a capacity of 10 with ≥ 80% of it used', () => {
    expect(aimdLimit(initialAimd(s), s)).toBe(20);
    const { limits, served } = simulate(10, 200);
    // The first round trip: 20 calls, 10 answered, 10 rejected (one cut: 30 × 0.9).
    expect(limits[0]).toBe(27);
    expect(Math.max(...limits.slice(20))).toBeLessThanOrEqual(12);
    expect(Math.min(...limits.slice(20))).toBeGreaterThanOrEqual(8);
    expect(served / (200 * 10)).toBeGreaterThanOrEqual(0.8);
  });

  it('cuts once per round trip: calls started before the last cut do not cut again', () => {
    let st = { limit: 20, slowStart: false, cutAt: -Infinity };
    st = aimdOverload(st, s, 100, 150);
    expect(st.limit).toBe(18);
    st = aimdOverload(st, s, 120, 160);
    expect(st.limit).toBe(18);
    st = aimdOverload(st, s, 151, 170);
    expect(st.limit).toBeCloseTo(16.2);
  });

  it('caps the limit at what was served beside a rejected call, also for calls of a burst already cut for', () => {
    let st = { limit: 16, slowStart: true, cutAt: -Infinity };
    // The last call of a burst of 16 is rejected first: 15 older ones still run (×0.9 of the lower: 14.4 → 13.5).
    st = aimdOverload(st, s, 100, 101, 15);
    expect(st.limit).toBeCloseTo(13.5);
    // An earlier-started rejected call of the same burst: no second cut, but the cap of the 10 served beside it.
    st = aimdOverload(st, s, 100, 102, 10);
    expect(st.limit).toBe(9);
    expect(st.cutAt).toBe(101);
    // A cap never raises the limit.
    st = aimdOverload(st, s, 100, 103, 14);
    expect(st.limit).toBe(9);
  });

  it('ServicePacing counts the calls begun before a rejected one and still running', () => {
    const p = new ServicePacing({ ...s, ceiling: 32, maxPauseMs: 0, now: () => 1000, onLimit: () => undefined, onPause: () => undefined });
    const tokens = Array.from({ length: 16 }, () => p.begin());
    // Calls 11-16 rejected at once while 1-10 are served: the limit ends at 9 (0.9 × 10).
    for (const t of tokens.slice(10).reverse()) p.record({ kind: 'response', status: 503 }, 0, t);
    expect(p.limit).toBe(9);
    // Calls that ended without an outcome (breaker open) no longer count as running.
    p.end(tokens[0]);
    const late = p.begin();
    p.record({ kind: 'response', status: 503 }, 2000, late);
    expect(p.limit).toBe(8);
  });

  it('stays between the floor and the ceiling', () => {
    let st = initialAimd({ floor: 3, ceiling: 5, decrease: 0.5 });
    expect(aimdLimit(st, { floor: 3, ceiling: 5, decrease: 0.5 })).toBe(3);
    for (let i = 0; i < 50; i++) st = aimdSuccess(st, { floor: 3, ceiling: 5, decrease: 0.5 });
    expect(aimdLimit(st, { floor: 3, ceiling: 5, decrease: 0.5 })).toBe(5);
    for (let i = 0; i < 50; i++) st = aimdOverload(st, { floor: 3, ceiling: 5, decrease: 0.5 }, i * 2, i * 2 + 1);
    expect(aimdLimit(st, { floor: 3, ceiling: 5, decrease: 0.5 })).toBe(3);
  });

  it('takes 429, 503, timeouts and connection errors as overload, nothing else', () => {
    expect([429, 503].every((status) => isOverloadSignal({ status }))).toBe(true);
    expect([200, 400, 500, 502, 504].some((status) => isOverloadSignal({ status }))).toBe(false);
    expect(isOverloadSignal({ failure: 'timeout' })).toBe(true);
    expect(isOverloadSignal({ failure: 'network' })).toBe(true);
    expect(isOverloadSignal({ failure: 'bad_response' })).toBe(false);
  });
});

describe('ServicePacing', () => {
  it('reports limit changes and turns a Retry-After on 429/503 into a capped pause', () => {
    const limits: number[] = [];
    const pauses: number[] = [];
    const p = new ServicePacing({ ...s, maxPauseMs: 5000, now: () => 1000, onLimit: (l) => limits.push(l), onPause: (until) => pauses.push(until) });
    expect(p.limit).toBe(20);
    p.record({ kind: 'response', status: 200 }, 0);
    p.record({ kind: 'response', status: 200 }, 0);
    expect(limits).toEqual([21, 22]);
    p.record({ kind: 'response', status: 429, retryAfterS: 2 }, 10);
    expect(pauses).toEqual([3000]);
    p.record({ kind: 'response', status: 503, retryAfterS: 3600 }, 2000);
    expect(pauses).toEqual([3000, 6000]);
    // A Retry-After is the pace: it pauses the service without cutting its limit.
    expect(p.limit).toBe(22);
    p.record({ kind: 'response', status: 500 }, 2000);
    expect(p.limit).toBe(limits.at(-1));
  });

  it('cuts on a 503 without Retry-After by the calls served beside it, on a timeout or a refused connect by the factor only', () => {
    const limits: number[] = [];
    const clock = { t: 1000 };
    const p = new ServicePacing({ ...s, maxPauseMs: 5000, now: () => clock.t, onLimit: (l) => limits.push(l), onPause: () => undefined });
    // A timeout with no older call in flight: a plain multiplicative cut, not a cap at 0 older calls.
    const lone = p.begin();
    p.record({ kind: 'failure', failure: 'timeout' }, 0, lone);
    expect(p.limit).toBe(Math.floor(20 * s.decrease));
    // A connection error with nothing older in flight either: again only the factor (once per round trip).
    clock.t = 2000;
    const refused = p.begin();
    p.record({ kind: 'failure', failure: 'network' }, 1500, refused);
    expect(p.limit).toBe(Math.floor(Math.floor(20 * s.decrease) * s.decrease));
    // An answered 503 with 3 calls served beside it: capped at what the downstream held.
    clock.t = 3000;
    const older = [p.begin(), p.begin(), p.begin()];
    const rejected = p.begin();
    p.record({ kind: 'response', status: 503 }, 2500, rejected);
    expect(p.limit).toBe(Math.max(s.floor, Math.floor(3 * s.decrease)));
    for (const t of older) p.end(t);
  });
});
