import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { until } from './jobs.ts';

/**
 * An enqueuer or dequeuer in its own process (`node <entry>`), so a test can SIGTERM or SIGKILL it
 * and start it again on the same port; stdout and stderr go to `logFile`.
 */
export class ServiceProcess {
  readonly entry: 'enqueuer/main.ts' | 'dequeuer/main.ts';
  readonly port: number;
  readonly env: Record<string, string>;
  readonly logFile: string;
  child: ChildProcess | undefined;
  /** Every PID it ran under, in order. */
  readonly pids: number[] = [];
  /** Every exit's code, in order (null: ended by a signal). */
  readonly exitCodes: Array<number | null> = [];

  constructor(entry: ServiceProcess['entry'], port: number, env: Record<string, string>, logFile: string) {
    this.entry = entry;
    this.port = port;
    this.env = env;
    this.logFile = logFile;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Spawns it and resolves once its /readyz answers 200 (30 s at most). */
  async start(): Promise<void> {
    const log = createWriteStream(this.logFile, { flags: 'a' });
    const child = spawn(process.execPath, [this.entry], { env: { ...this.env, PORT: String(this.port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    child.once('exit', (code) => this.exitCodes.push(code));
    this.child = child;
    this.pids.push(child.pid!);
    await until(async () => (await fetch(`${this.base}/readyz`).catch(() => undefined))?.status === 200, 30_000, `${this.entry} on ${this.port} ready`);
  }

  /** Sends `signal` and resolves when the process exited. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(child.pid!, signal);
    await exited;
    this.child = undefined;
  }
}
