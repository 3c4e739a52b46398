/** Exponential ceiling: min(cap, base · 2^attempt), attempt counted from 0. */
export function backoffCeilingMs(attempt: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 52));
}

/**
 * Delay drawn uniformly from [floorFraction · ceiling, ceiling] ("full jitter" when the floor is 0,
 * AWS architecture blog "Exponential Backoff And Jitter"): spreads synchronized retries apart.
 */
export function fullJitterDelayMs(
  attempt: number,
  baseMs: number,
  capMs: number,
  floorFraction = 0,
  random: () => number = Math.random,
): number {
  const ceiling = backoffCeilingMs(attempt, baseMs, capMs);
  return Math.round(ceiling * (floorFraction + (1 - floorFraction) * random()));
}
