/**
 * The adaptive limit on a service's in-flight downstream calls, pure (docs/adr/1700-fair-lanes-priority-pacing.md).
 * Slow start from half the ceiling (+1 per success) until the first overload signal, then additive
 * increase (+1 per limit's worth of successes, i.e. +1 per round trip) and multiplicative decrease
 * on 429, 503, timeouts and connection errors, at most once per round trip: only a call started
 * after the last cut can cut again, so one burst of rejections counts as one signal.
 */
export interface AimdSettings {
  floor: number;
  /** The highest limit (the service's work prefetch). */
  ceiling: number;
  /** Factor applied on an overload signal (0.9 = −10 %). */
  decrease: number;
}

export interface AimdState {
  /** Fractional limit; calls may start while in-flight < ⌊limit⌋. */
  readonly limit: number;
  /** True until the first overload signal. */
  readonly slowStart: boolean;
  /** When the last cut happened (ms); calls started before it cannot cut again. */
  readonly cutAt: number;
}

/**
 * Half the ceiling: a (re)started dequeuer neither throttles a healthy downstream to one call nor
 * sends a capacity-limited one its whole window at once (at most half of it can be rejected, under
 * the breaker's default 50 %).
 */
export function initialAimd(s: AimdSettings): AimdState {
  return { limit: Math.max(Math.min(s.floor, s.ceiling), Math.ceil(s.ceiling / 2)), slowStart: true, cutAt: -Infinity };
}

/** The number of calls allowed in flight. */
export function aimdLimit(state: AimdState, s: AimdSettings): number {
  return Math.max(Math.min(s.floor, s.ceiling), Math.min(s.ceiling, Math.floor(state.limit)));
}

/** A call that started at `startedAt` succeeded (or failed for a reason that says nothing about load). */
export function aimdSuccess(state: AimdState, s: AimdSettings): AimdState {
  if (state.limit >= s.ceiling) return state;
  const grown = state.slowStart ? state.limit + 1 : state.limit + 1 / Math.max(1, state.limit);
  return { ...state, limit: Math.min(s.ceiling, grown) };
}

/**
 * A call that started at `startedAt` met an overload signal at `now`; `olderInFlight` calls that
 * started before it were still running then (what the downstream held when it refused this one).
 * The limit is cut to `decrease` × the lower of itself and `olderInFlight`: the multiplicative cut
 * happens at most once per round trip, but every rejected call of a burst caps the limit at what was
 * served beside it. Without the cap, a downstream that rejects at once frees the slots of a burst
 * faster than its served calls finish, and the refills, rejected too, push the failure share of the
 * breaker's window past 50 % before the first success comes back.
 */
export function aimdOverload(state: AimdState, s: AimdSettings, startedAt: number, now: number, olderInFlight = Infinity): AimdState {
  const cap = Math.max(s.floor, olderInFlight * s.decrease);
  if (startedAt < state.cutAt) return cap < state.limit ? { ...state, limit: cap } : state;
  return { limit: Math.max(s.floor, Math.min(state.limit, olderInFlight) * s.decrease), slowStart: false, cutAt: now };
}

/** Downstream answers that mean "too much load": 429 and 503 (statuses), timeouts and connection errors. */
export function isOverloadSignal(outcome: { status?: number; failure?: 'timeout' | 'network' | 'bad_response' }): boolean {
  if (outcome.status !== undefined) return outcome.status === 429 || outcome.status === 503;
  return outcome.failure === 'timeout' || outcome.failure === 'network';
}
