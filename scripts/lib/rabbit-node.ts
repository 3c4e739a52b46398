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
  /** Sends a terminating `signal` (default SIGKILL) to the beam PID and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP: the node freezes with its sockets open. */
  pause(): void;
  /** SIGCONT after {@link PrivateNode.pause}. */
  resume(): void;
  /** Kills the node (data is discarded, so no graceful stop) and removes its dir; idempotent. */
  destroy(): Promise<void>;
}

const liveNodes = new Set<{ killSync: () => void }>();
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
  const nodeName = name.includes('@') ? name : `${name}@localhost`;
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

  const ctlEnv = cleanEnv(dir);
  const serverEnv: NodeJS.ProcessEnv = {
    ...ctlEnv,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, 'pid'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    // One scheduler and no busy-waiting, so several nodes do not spin on two cores.
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none',
  };
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const logPath = join(dir, 'server.log');
  let pid = 0;
  let wrapper: ChildProcess | undefined;
  let wrapperExit: Promise<void> = Promise.resolve();
  let watchdog: ChildProcess | undefined;
  let destroyed: Promise<void> | undefined;
  const signal = (sig: NodeJS.Signals): void => {
    if (pid) signalPid(pid, sig);
  };
  const killSync = (): void => {
    signal('SIGCONT');
    signal('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };

  const register = (): void => {
    liveNodes.add(handle);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', () => {
        for (const live of liveNodes) live.killSync();
      });
    }
    if (watchdog) return;
    // Covers this process dying by SIGKILL, when no exit hook runs. It checks the node name in
    // the candidate's environment so a reused PID is never killed.
    const script = 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; b=$(cat "$2/pid" 2>/dev/null); ' +
      'if [ -n "$b" ] && grep -qa "RABBITMQ_NODENAME=$3" "/proc/$b/environ" 2>/dev/null; then kill -CONT "$b"; kill -9 "$b"; fi; ' +
      'sleep 1; rm -rf "$2"';
    watchdog = spawn('/bin/sh', ['-c', script, 'gwt-node-watchdog', String(process.pid), dir, nodeName], {
      detached: true, stdio: 'ignore',
    });
    watchdog.unref();
  };

  const handle: PrivateNode & { killSync: () => void } = {
    nodeName, amqpPort, distPort, cookie, dir, killSync,
    url: `amqp://guest:guest@127.0.0.1:${amqpPort}`,
    ...(withManagement ? { managementPort, managementUrl: `http://guest:guest@127.0.0.1:${managementPort}` } : {}),
    ...(withPrometheus ? { prometheusPort } : {}),
    get pid() {
      return pid;
    },

    async start() {
      if (destroyed) throw new Error(`node ${nodeName} was destroyed`);
      if (wrapper) return;
      register();
      const deadline = Date.now() + startTimeoutMs;
      await rm(join(dir, 'pid'), { force: true });
      const child = spawnServer(serverEnv, dir, logPath, opts.log);
      wrapper = child;
      let exited = false;
      wrapperExit = new Promise((resolve) => {
        const settle = (): void => {
          exited = true;
          wrapper = undefined;
          pid = 0;
          resolve();
        };
        child.once('exit', settle);
        child.once('error', settle);
      });
      try {
        // The wrapper shell stays the parent; the beam PID comes from the pid file.
        while (!pid || !(await canConnect(amqpPort))) {
          if (exited) throw new Error('rabbitmq-server exited during boot');
          if (Date.now() > deadline) throw new Error(`not up after ${startTimeoutMs} ms`);
          if (!pid) pid = Number((await readFile(join(dir, 'pid'), 'utf8').catch(() => '')).trim()) || 0;
          await sleep(200);
        }
        await handle.rabbitmqctl(['await_startup', '--timeout', String(Math.max(1, Math.ceil((deadline - Date.now()) / 1000)))]);
      } catch (err) {
        await handle.kill().catch(() => undefined);
        const lines = readFileSync(logPath, 'utf8').split('\n');
        const tail = [...lines.filter((l) => /\[error\]|BOOT FAILED|^Error/.test(l)).slice(0, 8), ...lines.slice(-5)].join('\n');
        throw new Error(`private RabbitMQ node ${nodeName} failed to start: ${(err as Error).message}\n` +
          `log ${logPath} (tail):\n${tail}`, { cause: err });
      }
    },

    async stop(timeoutMs = 30_000) {
      if (!wrapper) return;
      signal('SIGCONT');
      signal('SIGTERM');
      const done = await Promise.race([wrapperExit.then(() => true), sleep(timeoutMs, false, { ref: false })]);
      if (!done) await handle.kill();
    },

    async kill(sig: NodeJS.Signals = 'SIGKILL') {
      if (!wrapper) return;
      const beamPid = pid;
      if (beamPid) {
        signal(sig);
        // A paused node only acts on a catchable signal once it runs again.
        if (sig !== 'SIGKILL') signal('SIGCONT');
      } else {
        wrapper.kill('SIGKILL');
      }
      await wrapperExit;
      while (beamPid && isAlive(beamPid)) await sleep(20);
    },

    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),

    destroy() {
      destroyed ??= (async () => {
        await handle.kill();
        liveNodes.delete(handle);
        if (watchdog?.pid) signalPid(watchdog.pid, 'SIGKILL');
        await rm(dir, { recursive: true, force: true });
      })();
      return destroyed;
    },

    rabbitmqctl(args, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        execFile(RABBITMQCTL_BIN, ['-n', nodeName, ...args], {
          env: ctlEnv, cwd: dir, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024,
        }, (err, stdout, stderr) => {
          if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }));
          else resolve(stdout);
        });
      });
    },
  };

  try {
    await handle.start();
    await handle.rabbitmqctl(['enable_feature_flag', 'all']);
  } catch (err) {
    // The dir (and its logs) stays until this process exits, for the reader of the error.
    await handle.kill();
    throw err;
  }
  return handle;
}

/** The caller's env minus RabbitMQ/Erlang settings, plus what server and CLI share. */
function cleanEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('RABBITMQ_') && !k.startsWith('ERL_') && k !== 'NODENAME') env[k] = v;
  }
  return {
    ...env,
    HOME: dir,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
    ERL_FLAGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
}

function spawnServer(env: NodeJS.ProcessEnv, dir: string, logPath: string, onLine?: (line: string) => void): ChildProcess {
  const logFd = openSync(logPath, 'a');
  // Without a line callback the server writes straight to the file, so a busy event loop here
  // can never fill a pipe and stall the broker.
  const child = spawn(RABBITMQ_SERVER_BIN, [], { cwd: dir, env, stdio: ['ignore', onLine ? 'pipe' : logFd, onLine ? 'pipe' : logFd] });
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
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', () => file.end());
  }
  return child;
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
  return signalPid(pid, 0);
}

/** Signals by PID only; false when the process is already gone. */
function signalPid(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    return process.kill(pid, signal);
  } catch {
    return false;
  }
}
