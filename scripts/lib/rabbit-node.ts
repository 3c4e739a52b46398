import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, createWriteStream, openSync, readFileSync, rmSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The Debian package's server script; the `/usr/sbin` wrapper would `su` to the rabbitmq user. */
export const RABBITMQ_SERVER_BIN = '/usr/lib/rabbitmq/bin/rabbitmq-server';
/** The CLI that talks to a node over Erlang distribution (needs the node's cookie via `HOME`). */
export const RABBITMQCTL_BIN = '/usr/lib/rabbitmq/bin/rabbitmqctl';

/** How to start a private node. */
export interface PrivateNodeOptions {
  /** Short node name (`<name>@localhost`); must be unique on the host. @default `gwt-<random>` */
  name?: string;
  /** Plugins to enable, e.g. `['rabbitmq_management', 'rabbitmq_prometheus']`. @default [] */
  plugins?: string[];
  /** Extra `rabbitmq.conf` lines, e.g. `{ heartbeat: 5, consumer_timeout: 60000 }`. */
  config?: Record<string, string | number>;
  /** Contents of `advanced.config` (Erlang terms), e.g. `[{kernel, [{net_ticktime, 15}]}].` @default `[].` */
  advancedConfig?: string;
  /** Erlang cookie; nodes that should cluster need the same one. @default random */
  cookie?: string;
  /** Bound on each start (boot until `await_startup` succeeds). @default 60000 */
  startTimeoutMs?: number;
  /** Receives the server's stdout/stderr lines (they always go to `<dir>/server.log` too). */
  log?: (line: string) => void;
}

/** A RabbitMQ node of its own, in a temp dir, on free loopback ports; controlled by PID only. */
export interface PrivateNode {
  /** Erlang node name, `<name>@localhost`. */
  readonly nodeName: string;
  readonly amqpPort: number;
  readonly distPort: number;
  /** `amqp://guest:guest@127.0.0.1:<amqpPort>` */
  readonly url: string;
  readonly managementPort?: number;
  /** `http://guest:guest@127.0.0.1:<managementPort>` when the management plugin is enabled. */
  readonly managementUrl?: string;
  readonly prometheusPort?: number;
  readonly cookie: string;
  /** PID of the running `beam.smp` (changes on every start); 0 when not running. */
  readonly pid: number;
  /** Temp dir holding config, data (`mnesia/`), logs (`log/`, `server.log`) and `HOME`. */
  readonly dir: string;
  /** Runs `rabbitmqctl -n <nodeName> ...args` with the node's cookie; resolves stdout. */
  rabbitmqctl(args: string[], timeoutMs?: number): Promise<string>;
  /** Graceful stop (SIGTERM, falls back to SIGKILL after `timeoutMs`); keeps data. */
  stop(timeoutMs?: number): Promise<void>;
  /** Starts again on the same ports and data. */
  start(): Promise<void>;
  /** Sends `signal` (default SIGKILL) to the beam PID and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the node freezes with its sockets open. */
  pause(): void;
  /** SIGCONT after {@link PrivateNode.pause}. */
  resume(): void;
  /** Kills the node (data is discarded, so no graceful stop) and removes its dir; idempotent. */
  destroy(): Promise<void>;
}

const liveNodes = new Set<RabbitNode>();
let exitHookInstalled = false;

/**
 * Starts a private RabbitMQ node and resolves once it is booted and all feature flags are enabled.
 * It is killed and its dir removed when this process exits, even on SIGKILL (a detached watchdog).
 */
export async function startPrivateNode(opts: PrivateNodeOptions = {}): Promise<PrivateNode> {
  const plugins = opts.plugins ?? [];
  const withManagement = plugins.includes('rabbitmq_management');
  const withPrometheus = plugins.includes('rabbitmq_prometheus');
  const [amqpPort = 0, distPort = 0, managementPort = 0, prometheusPort = 0] = await freePorts(4);
  const name = opts.name ?? `gwt-${randomBytes(4).toString('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const cookie = opts.cookie ?? randomBytes(16).toString('hex').toUpperCase();
  const conf: Record<string, string | number> = {
    'listeners.tcp.default': `127.0.0.1:${amqpPort}`,
    ...(withManagement ? { 'management.tcp.port': managementPort, 'management.tcp.ip': '127.0.0.1' } : {}),
    ...(withPrometheus ? { 'prometheus.tcp.port': prometheusPort, 'prometheus.tcp.ip': '127.0.0.1' } : {}),
    ...opts.config,
  };
  await writeFile(join(dir, 'rabbitmq.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}\n`).join(''));
  await writeFile(join(dir, 'advanced.config'), opts.advancedConfig ?? '[].\n');
  await writeFile(join(dir, 'enabled_plugins'), `[${plugins.join(',')}].\n`);
  // An empty env file so /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost) is not read.
  await writeFile(join(dir, 'rabbitmq-env.conf'), '');
  // The server and the CLI both read $HOME/.erlang.cookie; writing it first avoids a creation race.
  await writeFile(join(dir, '.erlang.cookie'), cookie);
  await chmod(join(dir, '.erlang.cookie'), 0o400);
  const node = new RabbitNode({
    nodeName: name.includes('@') ? name : `${name}@localhost`,
    dir, cookie, amqpPort, distPort,
    managementPort: withManagement ? managementPort : undefined,
    prometheusPort: withPrometheus ? prometheusPort : undefined,
    startTimeoutMs: opts.startTimeoutMs ?? 60_000,
    log: opts.log,
  });
  try {
    await node.start();
    await node.rabbitmqctl(['enable_feature_flag', 'all']);
  } catch (err) {
    await node.destroy();
    throw err;
  }
  return node;
}

interface NodeSpec {
  nodeName: string; dir: string; cookie: string; amqpPort: number; distPort: number;
  managementPort: number | undefined; prometheusPort: number | undefined;
  startTimeoutMs: number; log: ((line: string) => void) | undefined;
}

class RabbitNode implements PrivateNode {
  readonly nodeName: string;
  readonly amqpPort: number;
  readonly distPort: number;
  readonly url: string;
  readonly managementPort?: number;
  readonly managementUrl?: string;
  readonly prometheusPort?: number;
  readonly cookie: string;
  readonly dir: string;
  #spec: NodeSpec;
  #pid = 0;
  #wrapper: ChildProcess | undefined;
  #wrapperExit: Promise<void> = Promise.resolve();
  #watchdog: ChildProcess | undefined;
  #destroyed: Promise<void> | undefined;

  constructor(spec: NodeSpec) {
    this.#spec = spec;
    this.nodeName = spec.nodeName;
    this.amqpPort = spec.amqpPort;
    this.distPort = spec.distPort;
    this.url = `amqp://guest:guest@127.0.0.1:${spec.amqpPort}`;
    this.managementPort = spec.managementPort;
    this.managementUrl = spec.managementPort ? `http://guest:guest@127.0.0.1:${spec.managementPort}` : undefined;
    this.prometheusPort = spec.prometheusPort;
    this.cookie = spec.cookie;
    this.dir = spec.dir;
  }

  get pid(): number {
    return this.#pid;
  }

  async start(): Promise<void> {
    if (this.#destroyed) throw new Error(`node ${this.nodeName} was destroyed`);
    if (this.#wrapper) return;
    this.#register();
    const deadline = Date.now() + this.#spec.startTimeoutMs;
    const logPath = join(this.dir, 'server.log');
    await rm(join(this.dir, 'pid'), { force: true });
    const logFd = openSync(logPath, 'a');
    const onLine = this.#spec.log;
    // Without a line callback the server writes straight to the file, so a busy event loop here
    // can never fill a pipe and stall the broker.
    const wrapper = spawn(RABBITMQ_SERVER_BIN, [], {
      cwd: this.dir, env: this.#env(true), stdio: ['ignore', onLine ? 'pipe' : logFd, onLine ? 'pipe' : logFd],
    });
    closeSync(logFd);
    if (onLine) {
      const file = createWriteStream(logPath, { flags: 'a' });
      let rest = '';
      const onData = (chunk: Buffer): void => {
        file.write(chunk);
        const lines = (rest + chunk.toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) onLine(line);
      };
      wrapper.stdout?.on('data', onData);
      wrapper.stderr?.on('data', onData);
      wrapper.once('exit', () => file.end());
    }
    this.#wrapper = wrapper;
    let exited = false;
    this.#wrapperExit = new Promise((resolve) => {
      const settle = (): void => {
        exited = true;
        this.#wrapper = undefined;
        this.#pid = 0;
        resolve();
      };
      wrapper.once('exit', settle);
      wrapper.once('error', settle);
    });
    try {
      // The wrapper shell stays the parent; the beam PID comes from the pid file.
      while (!this.#pid || !(await canConnect(this.amqpPort))) {
        if (exited) throw new Error('rabbitmq-server exited during boot');
        if (Date.now() > deadline) throw new Error(`not up after ${this.#spec.startTimeoutMs} ms`);
        if (!this.#pid) this.#pid = Number((await readFile(join(this.dir, 'pid'), 'utf8').catch(() => '')).trim()) || 0;
        await sleep(200);
      }
      await this.rabbitmqctl(['await_startup', '--timeout', String(Math.max(1, Math.ceil((deadline - Date.now()) / 1000)))]);
    } catch (err) {
      await this.kill().catch(() => undefined);
      const tail = readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n');
      throw new Error(`private RabbitMQ node ${this.nodeName} failed to start: ${(err as Error).message}\n` +
        `log ${logPath} (tail):\n${tail}`, { cause: err });
    }
  }

  async stop(timeoutMs = 30_000): Promise<void> {
    if (!this.#wrapper) return;
    this.#signal('SIGCONT');
    this.#signal('SIGTERM');
    const done = await Promise.race([this.#wrapperExit.then(() => true), sleep(timeoutMs, false, { ref: false })]);
    if (!done) await this.kill();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.#wrapper) return;
    const beamPid = this.#pid;
    if (beamPid) {
      this.#signal(signal);
    } else {
      this.#wrapper.kill('SIGKILL');
    }
    await this.#wrapperExit;
    while (beamPid && isAlive(beamPid)) await sleep(20);
  }

  pause(): void {
    this.#signal('SIGSTOP');
  }

  resume(): void {
    this.#signal('SIGCONT');
  }

  destroy(): Promise<void> {
    this.#destroyed ??= (async () => {
      await this.kill();
      liveNodes.delete(this);
      if (this.#watchdog?.pid) signalPid(this.#watchdog.pid, 'SIGKILL');
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.#destroyed;
  }

  rabbitmqctl(args: string[], timeoutMs = 60_000): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(RABBITMQCTL_BIN, ['-n', this.nodeName, ...args], {
        env: this.#env(false), cwd: this.dir, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024,
      }, (err, stdout, stderr) => {
        if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }));
        else resolve(stdout);
      });
    });
  }

  /** Synchronous last-resort cleanup for `process.on('exit')`. */
  killSync(): void {
    if (this.#pid) {
      signalPid(this.#pid, 'SIGCONT');
      signalPid(this.#pid, 'SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  #signal(signal: NodeJS.Signals): void {
    if (this.#pid) signalPid(this.#pid, signal);
  }

  #register(): void {
    liveNodes.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', () => {
        for (const node of liveNodes) node.killSync();
      });
    }
    if (this.#watchdog) return;
    // Covers the case where this process dies by SIGKILL and no exit hook runs. It checks the
    // node name in the candidate's environment so a reused PID is never killed.
    const script = 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; b=$(cat "$2/pid" 2>/dev/null); ' +
      'if [ -n "$b" ] && grep -qa "RABBITMQ_NODENAME=$3" "/proc/$b/environ" 2>/dev/null; then kill -CONT "$b"; kill -9 "$b"; fi; ' +
      'sleep 1; rm -rf "$2"';
    this.#watchdog = spawn('/bin/sh', ['-c', script, 'gwt-node-watchdog', String(process.pid), this.dir, this.nodeName], {
      detached: true, stdio: 'ignore',
    });
    this.#watchdog.unref();
  }

  #env(server: boolean): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith('RABBITMQ_') && !k.startsWith('ERL_') && k !== 'NODENAME') env[k] = v;
    }
    Object.assign(env, {
      HOME: this.dir,
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      RABBITMQ_CONF_ENV_FILE: join(this.dir, 'rabbitmq-env.conf'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      ERL_FLAGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    });
    if (server) {
      Object.assign(env, {
        RABBITMQ_NODENAME: this.nodeName,
        RABBITMQ_NODE_PORT: String(this.amqpPort),
        RABBITMQ_DIST_PORT: String(this.distPort),
        RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
        RABBITMQ_LOG_BASE: join(this.dir, 'log'),
        RABBITMQ_PID_FILE: join(this.dir, 'pid'),
        RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
        RABBITMQ_ADVANCED_CONFIG_FILE: join(this.dir, 'advanced.config'),
        RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
        // One scheduler and no busy-waiting, so several nodes do not spin on two cores.
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none',
      });
    }
    return env;
  }
}

/** Finds `count` distinct free TCP ports on 127.0.0.1 (bind port 0, read, release). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
