/** The parts of a V8 `.cpuprofile` (written by `node --cpu-prof`) the summary reads. */
export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time of one function over a profile. */
export interface SelfTime {
  fn: string;
  /** `file:line`, with the path shortened to the repository or package. */
  where: string;
  selfMs: number;
  percent: number;
}

/** Shortens a script URL to `node_modules/<pkg>/…` or the repository-relative path. */
export function shortUrl(url: string): string {
  if (!url) return '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) return url.slice(nm);
  const m = /\/(enqueuer|dequeuer|shared|demo|bench|scripts)\/.*$/.exec(url);
  return m ? m[0].slice(1) : url.replace(/^file:\/\//, '');
}

/**
 * Top functions by self time: time deltas are attributed to each sample's node, nodes with the same
 * function and location are added up (idle and GC are kept: they tell how busy the process was).
 */
export function topSelfTime(profile: CpuProfile, limit = 20): SelfTime[] {
  const byNode = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) byNode.set(samples[i]!, (byNode.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  const byFn = new Map<string, SelfTime>();
  let totalUs = 0;
  for (const node of profile.nodes) {
    const us = byNode.get(node.id) ?? 0;
    if (us === 0) continue;
    totalUs += us;
    const fn = node.callFrame.functionName || '(anonymous)';
    const where = `${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
    const key = `${fn} ${where}`;
    const entry = byFn.get(key) ?? { fn, where, selfMs: 0, percent: 0 };
    entry.selfMs += us / 1000;
    byFn.set(key, entry);
  }
  const all = [...byFn.values()].sort((a, b) => b.selfMs - a.selfMs);
  for (const e of all) e.percent = totalUs > 0 ? (e.selfMs * 1000 * 100) / totalUs : 0;
  return all.slice(0, limit);
}

/** Self time grouped by package or project directory (what share goes to express, amqplib, …). */
export function selfTimeByArea(profile: CpuProfile): Array<{ area: string; percent: number }> {
  const top = topSelfTime(profile, Number.MAX_SAFE_INTEGER);
  const areas = new Map<string, number>();
  for (const t of top) {
    const w = t.where;
    const area = w.startsWith('node_modules/') ? w.split('/').slice(1, w.split('/')[1]!.startsWith('@') ? 3 : 2).join('/')
      : w.startsWith('(native)') ? (t.fn.startsWith('(') ? t.fn : 'native/builtin')
      : w.startsWith('node:') ? 'node core'
      : w.split('/')[0]!;
    areas.set(area, (areas.get(area) ?? 0) + t.percent);
  }
  return [...areas.entries()].map(([area, percent]) => ({ area, percent })).sort((a, b) => b.percent - a.percent);
}

/** Time in a function including what it calls (each sample counted once per function), as % of busy time. */
export interface TotalTime {
  fn: string;
  where: string;
  totalMs: number;
  /** Share of the non-idle samples. */
  busyPercent: number;
}

/**
 * Top functions by total (inclusive) time over the busy samples (idle excluded): where a request's
 * CPU goes, e.g. how much of it runs under Express's router, pino or prom-client.
 */
export function topTotalTime(profile: CpuProfile, limit = 30): TotalTime[] {
  const parent = new Map<number, number>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes as Array<CpuProfile['nodes'][number] & { children?: number[] }>) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (id: number): string => {
    const f = byId.get(id)!.callFrame;
    return `${f.functionName || '(anonymous)'}\u0000${shortUrl(f.url)}:${f.lineNumber + 1}`;
  };
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const totals = new Map<string, number>();
  let busyUs = 0;
  for (let i = 0; i < samples.length; i++) {
    const leaf = samples[i]!;
    if (byId.get(leaf)?.callFrame.functionName === '(idle)') continue;
    const us = deltas[i] ?? 0;
    busyUs += us;
    const seen = new Set<string>();
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      const k = keyOf(id);
      if (seen.has(k)) continue;
      seen.add(k);
      totals.set(k, (totals.get(k) ?? 0) + us);
    }
  }
  return [...totals.entries()]
    .map(([k, us]) => {
      const [fn, where] = k.split('\u0000') as [string, string];
      return { fn, where, totalMs: us / 1000, busyPercent: busyUs > 0 ? (us * 100) / busyUs : 0 };
    })
    .sort((a, b) => b.totalMs - a.totalMs)
    .slice(0, limit);
}
