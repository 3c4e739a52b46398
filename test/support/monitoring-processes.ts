import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';

/** A Prometheus or Alertmanager started by a test, controlled by its PID only. */
export interface ToolProcess {
  readonly pid: number;
  readonly url: string;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves when the process exited. */
  stop(timeoutMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let hookInstalled = false;

function startTool(bin: string, args: string[], dir: string, name: string, url: string): ToolProcess {
  const log = createWriteStream(join(dir, `${name}.log`));
  const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  live.add(child);
  if (!hookInstalled) {
    hookInstalled = true;
    process.once('exit', () => {
      for (const c of live) if (c.pid) process.kill(c.pid, 'SIGKILL');
    });
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    live.delete(child);
    resolve();
  }));
  if (!child.pid) throw new Error(`${bin} did not start`);
  const pid = child.pid;
  return {
    pid,
    url,
    async stop(timeoutMs = 5000) {
      if (!live.has(child)) return;
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (live.has(child)) process.kill(pid, 'SIGKILL');
      }, timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Resolves once `url` answers 200, or throws after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > end) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Prometheus on 127.0.0.1:`port`, TSDB in `dir`, alerts resent every second. */
export function startPrometheus(dir: string, configFile: string, port: number): ToolProcess {
  return startTool(process.env.PROMETHEUS ?? 'prometheus', [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${join(dir, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--rules.alert.resend-delay=1s',
    '--log.level=warn',
  ], dir, 'prometheus', `http://127.0.0.1:${port}`);
}

/** Alertmanager on 127.0.0.1:`port`, clustering off, data in `dir`. */
export function startAlertmanager(dir: string, configFile: string, port: number): ToolProcess {
  return startTool(process.env.ALERTMANAGER ?? 'prometheus-alertmanager', [
    `--config.file=${configFile}`,
    `--storage.path=${join(dir, 'am-data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--cluster.listen-address=',
    '--log.level=warn',
  ], dir, 'alertmanager', `http://127.0.0.1:${port}`);
}
