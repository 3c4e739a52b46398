import { CPU_ROLES, type CpuPerOp, type SyscallsPerOp } from './cpu.ts';

/** One timed run of one scenario. */
export interface RunResult {
  /** Successful operations per second over the measured time. */
  throughputPerS: number;
  /** Latency percentiles (ms); undefined where latency is not meaningful (drain). */
  p50Ms: number | undefined;
  p99Ms: number | undefined;
  /** Successful operations counted. */
  count: number;
  /** Failed operations: transport errors, timeouts, unexpected statuses, nacks. */
  errors: number;
  durationS: number;
  /** CPU µs per successful operation per process role over the run (from /proc/<pid>/stat). */
  cpu?: CpuPerOp;
  /** Read/write system calls per successful operation per process role (from /proc/<pid>/io). */
  syscalls?: SyscallsPerOp;
}

/** Several runs of one scenario folded into the figures the report shows. */
export interface Summary {
  runs: number;
  throughputMedianPerS: number;
  throughputMinPerS: number;
  throughputMaxPerS: number;
  /** Median over runs of each run's percentile. */
  p50Ms: number | undefined;
  p99Ms: number | undefined;
  errors: number;
  /** Median over runs of each role's CPU µs per operation (roles measured in every run); absent when none was. */
  cpu?: CpuPerOp;
  /** Median over runs of each role's write and read system calls per operation; absent when none was counted. */
  syscalls?: SyscallsPerOp;
}

/** Median of a non-empty list (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of an empty list');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Smallest and largest of a non-empty list. */
export function minMax(values: readonly number[]): { min: number; max: number } {
  if (values.length === 0) throw new Error('minMax of an empty list');
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

/** Nearest-rank percentile (`p` in 0–100) of values sorted ascending; undefined when empty. */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/**
 * A closed-loop load for `durationS`: `inflight` workers each run `one()` back to back. `one` resolves
 * the operation's latency (ms) when it succeeded, undefined when it failed (counted as an error).
 */
export async function closedLoop(inflight: number, durationS: number, one: () => Promise<number | undefined>): Promise<RunResult> {
  const latenciesMs: number[] = [];
  let errors = 0;
  const startedMs = Date.now();
  const endMs = startedMs + durationS * 1000;
  const worker = async (): Promise<void> => {
    while (Date.now() < endMs) {
      const ms = await one();
      if (ms === undefined) errors++;
      else latenciesMs.push(ms);
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  const measuredS = (Date.now() - startedMs) / 1000;
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    throughputPerS: latenciesMs.length / measuredS,
    p50Ms: percentileOfSorted(sorted, 50),
    p99Ms: percentileOfSorted(sorted, 99),
    count: latenciesMs.length,
    errors,
    durationS: measuredS,
  };
}

/** Folds the runs of one scenario: median and min-max of throughput, median percentiles, summed errors. */
export function summarize(runs: readonly RunResult[]): Summary {
  if (runs.length === 0) throw new Error('no runs to summarize');
  const tp = runs.map((r) => r.throughputPerS);
  const { min, max } = minMax(tp);
  const p50s = runs.map((r) => r.p50Ms).filter((v): v is number => v !== undefined);
  const p99s = runs.map((r) => r.p99Ms).filter((v): v is number => v !== undefined);
  const cpu = medianCpu(runs);
  const syscalls = medianSyscalls(runs);
  return {
    runs: runs.length,
    throughputMedianPerS: median(tp),
    throughputMinPerS: min,
    throughputMaxPerS: max,
    p50Ms: p50s.length ? median(p50s) : undefined,
    p99Ms: p99s.length ? median(p99s) : undefined,
    errors: runs.reduce((n, r) => n + r.errors, 0),
    ...(Object.keys(cpu).length ? { cpu } : {}),
    ...(Object.keys(syscalls).length ? { syscalls } : {}),
  };
}

/** Per role, the medians of the runs' write and read system calls per operation; a role missing from any run is left out. */
export function medianSyscalls(runs: readonly RunResult[]): SyscallsPerOp {
  const out: SyscallsPerOp = {};
  for (const role of CPU_ROLES) {
    const values = runs.map((r) => r.syscalls?.[role]);
    if (!values.length || values.some((v) => v === undefined)) continue;
    const known = values as Array<{ reads: number; writes: number }>;
    out[role] = { writes: median(known.map((v) => v.writes)), reads: median(known.map((v) => v.reads)) };
  }
  return out;
}

/** Per role, the median of the runs' CPU per operation; a role missing from any run is left out. */
export function medianCpu(runs: readonly RunResult[]): CpuPerOp {
  const out: CpuPerOp = {};
  for (const role of CPU_ROLES) {
    const values = runs.map((r) => r.cpu?.[role]);
    if (values.length && values.every((v) => v !== undefined)) out[role] = median(values as number[]);
  }
  return out;
}

/** `value / base`, or undefined when either is missing or the base is not positive. */
export function ratio(value: number | undefined, base: number | undefined): number | undefined {
  if (value === undefined || base === undefined || !(base > 0) || !Number.isFinite(value)) return undefined;
  return value / base;
}

/** One sample of a time series, `atMs` from the start of the run. */
export interface Sample {
  atMs: number;
  value: number;
}

/**
 * Relative growth of a series between two points of the run (fractions of `totalMs`): the median
 * of the samples within ±`windowFraction` of each point is compared, so one spike does not decide it.
 * Undefined when a window holds no sample or the earlier value is not positive.
 */
export function growthBetween(samples: readonly Sample[], totalMs: number, fromFraction: number, toFraction: number, windowFraction = 0.05): number | undefined {
  const around = (f: number): number | undefined => {
    const lo = (f - windowFraction) * totalMs;
    const hi = (f + windowFraction) * totalMs;
    const inWindow = samples.filter((s) => s.atMs >= lo && s.atMs <= hi).map((s) => s.value);
    return inWindow.length ? median(inWindow) : undefined;
  };
  const from = around(fromFraction);
  const to = around(toFraction);
  if (from === undefined || to === undefined || !(from > 0)) return undefined;
  return (to - from) / from;
}
