import { readFileSync } from 'node:fs';

/** Resident set size of a (child) process in MiB, from `/proc/<pid>/status` (Linux). */
export function rssMb(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  if (!Number.isFinite(kb)) throw new Error(`no VmRSS for process ${pid}`);
  return Math.round(kb / 1024);
}
