import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';

/** A child process the bench started; only these are ever signalled. */
export interface Child {
  name: string;
  pid: number;
  process: ChildProcess;
  /** Last lines of its stdout/stderr, for diagnostics when it fails. */
  tail: () => string;
  exited: Promise<number | string | null>;
}

const TAIL_LINES = 40;

/** Owns the bench's child processes and stops every one of them, by PID. */
export class ProcessGroup {
  readonly #children = new Set<Child>();

  /** Starts `node <file>` with the given env (and extra node flags such as `--cpu-prof`). */
  spawnNode(name: string, file: string, env: NodeJS.ProcessEnv, nodeFlags: readonly string[] = []): Child {
    const proc = spawn(process.execPath, [...nodeFlags, file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (proc.pid === undefined) throw new Error(`could not start ${name}`);
    const lines: string[] = [];
    const keep = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        lines.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
        if (lines.length > TAIL_LINES) lines.shift();
      }
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    // BENCH_CHILD_LOG_DIR: every child's whole output also goes to <dir>/<name>.log (e.g. for --trace-gc).
    const logDir = process.env.BENCH_CHILD_LOG_DIR;
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      const log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
      proc.stdout!.pipe(log, { end: false });
      proc.stderr!.pipe(log, { end: false });
      proc.once('close', () => log.end());
    }
    const exited = new Promise<number | string | null>((resolve) => proc.once('exit', (code, signal) => resolve(signal ?? code)));
    const child: Child = { name, pid: proc.pid, process: proc, tail: () => lines.join('\n'), exited };
    this.#children.add(child);
    void exited.then(() => this.#children.delete(child));
    return child;
  }

  /** SIGTERM (graceful: a `--cpu-prof` profile is written on exit), SIGKILL after `graceMs`. */
  async stop(child: Child, graceMs = 10_000): Promise<void> {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return;
    child.process.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([
      child.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (killed) {
      child.process.kill('SIGKILL');
      await child.exited;
    }
  }

  /** Stops all children still running, newest first. */
  async stopAll(graceMs = 10_000): Promise<void> {
    for (const child of [...this.#children].reverse()) await this.stop(child, graceMs);
  }

  /** Last-resort synchronous kill (process exit path): SIGKILL every child still running. */
  killAllNow(): void {
    for (const child of this.#children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
  }

  get running(): number {
    return this.#children.size;
  }
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Polls `url` until it answers 2xx, at most `timeoutMs`; fails early with the child's last output
 * if the child exits.
 */
export async function waitHttpOk(url: string, timeoutMs: number, child?: Child, init?: RequestInit): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < until) {
    if (child && (child.process.exitCode !== null || child.process.signalCode !== null)) {
      throw new Error(`${child.name} exited before ready:\n${child.tail()}`);
    }
    try {
      const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.ok) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(150);
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms (${last})${child ? `\n${child.tail()}` : ''}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resident set size of a process (bytes) from /proc, or undefined when it is gone or not Linux. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The first sample of a metric in a Prometheus exposition, any labels. */
export function metricValue(exposition: string, name: string): number | undefined {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? ([^\\s]+)`, 'm');
  const m = re.exec(exposition);
  return m ? Number(m[1]) : undefined;
}

/** Scrapes `/metrics`; undefined when it does not answer within 2 s. */
export async function scrape(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return await res.text();
  } catch {
    return undefined;
  }
}

/** Cumulative bucket counts (`le` → count) of a histogram, summed over its label sets. */
export function histogramBuckets(exposition: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{([^}]*)\\} ([^\\s]+)`, 'gm');
  for (const m of exposition.matchAll(re)) {
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le === undefined) continue;
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(m[2]));
  }
  return out;
}

/**
 * The `q` quantile of what a histogram observed between two scrapes, as the upper bound of the
 * bucket it falls in (so "≤ x"); undefined when nothing was observed.
 */
export function quantileBetween(before: Map<number, number>, after: Map<number, number>, q: number): number | undefined {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  if (total <= 0) return undefined;
  for (const b of bounds) if ((after.get(b) ?? 0) - (before.get(b) ?? 0) >= q * total) return b;
  return Number.POSITIVE_INFINITY;
}
