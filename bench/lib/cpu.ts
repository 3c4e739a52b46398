// CPU time per process from /proc/<pid>/stat (utime + stime), so every scenario can say where its
// cost sits: front, worker, broker, load generator, downstream. Linux only; elsewhere the figures
// are absent (undefined), never invented.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** utime and stime of one process, in clock ticks. */
export interface ProcTimes {
  utimeTicks: number;
  stimeTicks: number;
}

/**
 * Parses the content of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
 * itself hold spaces and parentheses, so fields are counted after the LAST `)`: utime and stime
 * are fields 14 and 15 of the whole line.
 */
export function parseProcStat(text: string): ProcTimes {
  const close = text.lastIndexOf(')');
  if (close === -1) throw new Error('not a /proc/<pid>/stat line (no command name)');
  const rest = text.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const utimeTicks = Number(rest[14 - 3]);
  const stimeTicks = Number(rest[15 - 3]);
  if (!Number.isInteger(utimeTicks) || !Number.isInteger(stimeTicks)) throw new Error('not a /proc/<pid>/stat line (no utime/stime)');
  return { utimeTicks, stimeTicks };
}

let ticksPerS: number | undefined;
/** USER_HZ (`getconf CLK_TCK`), 100 on every Linux this runs on when getconf is missing. */
export function clockTicksPerS(): number {
  if (ticksPerS === undefined) {
    try {
      ticksPerS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerS = 100;
    }
  }
  return ticksPerS;
}

/** CPU seconds (user + system) a process has used so far; undefined when it is gone or not Linux. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const t = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return (t.utimeTicks + t.stimeTicks) / clockTicksPerS();
  } catch {
    return undefined;
  }
}

/** Read and write system calls a process has made so far (`syscr`, `syscw` of /proc/<pid>/io); undefined when unreadable. */
export function syscallCounts(pid: number): { reads: number; writes: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    const reads = Number(/^syscr:\s*(\d+)/m.exec(text)?.[1]);
    const writes = Number(/^syscw:\s*(\d+)/m.exec(text)?.[1]);
    return Number.isFinite(reads) && Number.isFinite(writes) ? { reads, writes } : undefined;
  } catch {
    return undefined;
  }
}

/** Inodes of the TCP sockets listening on `port`, from the text of /proc/net/tcp or tcp6. */
export function listeningInodes(procNetTcp: string, port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const line of procNetTcp.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    if (f.length < 10) continue;
    if (f[3] === '0A' && f[1]!.endsWith(`:${hexPort}`)) out.push(f[9]!);
  }
  return out;
}

/**
 * The pid of the process listening on a TCP port of this machine (the broker in use, found by its
 * AMQP port rather than by name: several RabbitMQ nodes may run here). Undefined when it cannot be
 * found (not Linux, not permitted, another network namespace).
 */
export function pidListeningOn(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      for (const i of listeningInodes(readFileSync(file, 'utf8'), port)) inodes.add(`socket:[${i}]`);
    } catch {
      // not Linux or no IPv6
    }
  }
  if (inodes.size === 0) return undefined;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) return Number(pid);
      } catch {
        // fd closed meanwhile
      }
    }
  }
  return undefined;
}

/** The processes whose CPU a run measures, by role. */
export const CPU_ROLES = ['front', 'worker', 'broker', 'loadgen', 'downstream'] as const;
export type CpuRole = (typeof CPU_ROLES)[number];

/** CPU µs per operation per role over a measured window. */
export type CpuPerOp = Partial<Record<CpuRole, number>>;

/** Read and write system calls per operation per role over a measured window. */
export type SyscallsPerOp = Partial<Record<CpuRole, { reads: number; writes: number }>>;

type RoleProcesses = Partial<Record<CpuRole, number | number[]>>;

/**
 * The growth of per-process counters over a window, per role and per operation: call the returned
 * function when the window ended, with the operations completed. A role with several processes (two
 * dequeuers) is given as a list of pids, summed; a role with a process that cannot be read is left out.
 */
function startCounterWindow(roles: RoleProcesses, read: (pid: number) => number[] | undefined): (operations: number) => Partial<Record<CpuRole, number[]>> {
  const pidsOf = (v: number | number[] | undefined): number[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const before = new Map<number, number[] | undefined>();
  for (const role of CPU_ROLES) for (const pid of pidsOf(roles[role])) before.set(pid, read(pid));
  return (operations) => {
    const out: Partial<Record<CpuRole, number[]>> = {};
    if (!(operations > 0)) return out;
    for (const role of CPU_ROLES) {
      const pids = pidsOf(roles[role]);
      let sum: number[] | undefined;
      for (const pid of pids) {
        const a = before.get(pid);
        const b = read(pid);
        if (a === undefined || b === undefined) {
          sum = undefined;
          break;
        }
        sum = b.map((v, i) => v - a[i]! + (sum?.[i] ?? 0));
      }
      if (sum) out[role] = sum.map((v) => v / operations);
    }
    return out;
  };
}

/**
 * Starts counting read/write system calls (socket reads and writes are most of them), per role and
 * operation. Deterministic where CPU time is noisy, so a change that batches writes shows in it at once.
 */
export function startSyscallWindow(roles: RoleProcesses): (operations: number) => SyscallsPerOp {
  const end = startCounterWindow(roles, (pid) => {
    const c = syscallCounts(pid);
    return c && [c.writes, c.reads];
  });
  return (operations) => {
    const out: SyscallsPerOp = {};
    for (const [role, [writes, reads]] of Object.entries(end(operations)) as Array<[CpuRole, number[]]>) out[role] = { writes: writes!, reads: reads! };
    return out;
  };
}

/** Starts measuring CPU (user + system) µs per operation per role ({@link startCounterWindow}). */
export function startCpuWindow(roles: RoleProcesses): (operations: number) => CpuPerOp {
  const end = startCounterWindow(roles, (pid) => {
    const s = cpuSeconds(pid);
    return s === undefined ? undefined : [s * 1e6];
  });
  return (operations) => {
    const out: CpuPerOp = {};
    for (const [role, [us]] of Object.entries(end(operations)) as Array<[CpuRole, number[]]>) out[role] = us!;
    return out;
  };
}
