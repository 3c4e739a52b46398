// `npm start`: runs the demo downstream (:8081, service `echo`), the dequeuer (:8090) and the
// enqueuer (:8080) against RABBITMQ_URL, or the local broker, or a private node it starts.
// Ctrl-C stops all three gracefully (and the private node, if one was started): the children run in
// process groups of their own, so the terminal's SIGINT reaches only this launcher, which stops them
// one at a time in reverse start order (enqueuer, dequeuer, then the downstream they call), each
// with one SIGTERM; further Ctrl-Cs do not cut the drain short.
// The RabbitMQ management UI: a private node has it (and the Prometheus plugin); on the machine's
// broker without it, this prints the command that enables it, or runs it with --enable-plugins
// (or START_ENABLE_PLUGINS=true).
import { spawn, type ChildProcess } from 'node:child_process';
import { findBroker } from './lib/find-broker.ts';
import { ENABLE_PLUGINS_COMMAND, enableLocalPlugins, localManagementUrl, managementAnswers, redact } from './lib/management.ts';

const log = (msg: string): void => {
  process.stdout.write(`[start] ${msg}\n`);
};

const broker = await findBroker(process.env, { log });
log(`broker: ${broker.source} ${broker.url.replace(/:[^:@/]*@/, ':***@')}${broker.managementUrl ? ` (management UI ${broker.managementUrl.replace(/:[^:@/]*@/, ':***@')})` : ''}`);

/** The management UI's base URL with credentials once it answers, else undefined (with the reason printed). */
async function managementUi(): Promise<string | undefined> {
  const url = broker.managementUrl ?? (broker.source === 'env' ? undefined : localManagementUrl(broker.url));
  if (!url) {
    log('management UI: unknown for this RABBITMQ_URL; set RABBITMQ_MANAGEMENT_URL=http://user:pass@host:15672 to have it checked and printed');
    return undefined;
  }
  const probe = await managementAnswers(url);
  if (probe.ok) return url;
  const local = localManagementUrl(broker.url) === url;
  if (local && (process.argv.includes('--enable-plugins') || process.env.START_ENABLE_PLUGINS === 'true')) {
    log('enabling rabbitmq_management and rabbitmq_prometheus on the local broker');
    try {
      await enableLocalPlugins(url);
      return url;
    } catch (err) {
      log(`could not enable the plugins: ${(err as Error).message}`);
    }
  }
  log(`management UI not answering at ${redact(url)} (${probe.reason}).` +
    (local ? ` Enable it and the Prometheus endpoint with: ${ENABLE_PLUGINS_COMMAND}   (or: npm start -- --enable-plugins)` : ''));
  return undefined;
}
const ui = await managementUi();

const demoPort = process.env.DEMO_PORT ?? '8081';
const common = {
  ...process.env,
  RABBITMQ_URL: broker.url,
  // The services read the broker's feature flags through it at start-up.
  ...(ui ? { RABBITMQ_MANAGEMENT_URL: ui } : {}),
  SERVICES_JSON: process.env.SERVICES_JSON ?? (process.env.SERVICES_FILE ? '' : JSON.stringify({ services: { echo: { url: `http://127.0.0.1:${demoPort}` } } })),
  // No load balancer in front of a local run: stop without the readiness drain delay.
  DRAIN_DELAY_MS: process.env.DRAIN_DELAY_MS ?? '0',
};
const children: ChildProcess[] = [];

function run(name: string, file: string, env: NodeJS.ProcessEnv): ChildProcess {
  // detached: its own process group, out of reach of the terminal's Ctrl-C (SIGINT goes to the
  // whole foreground group); this launcher alone decides when and in which order children stop.
  const child = spawn(process.execPath, [file], { env, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  child.on('exit', (code, signal) => {
    log(`${name} exited (${signal ?? code})`);
    if (!stopping) void stop(1);
  });
  children.push(child);
  return child;
}

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let stopping = false;
async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Reverse start order: the enqueuer stops taking requests first, the downstream goes last.
  for (const child of [...children].reverse()) {
    if (child.exitCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
  }
  await broker.node?.destroy();
  process.exit(code);
}
const onSignal = (signal: NodeJS.Signals): void => {
  if (stopping) log(`${signal}: already stopping, the drain continues`);
  else log(`${signal}: stopping enqueuer, dequeuer, then demo`);
  void stop(0);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// If the launcher itself dies, its children (in their own groups) must not outlive it.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
});

run('demo', 'demo/main.ts', { ...common, DEMO_PORT: demoPort });
run('dequeuer', 'dequeuer/main.ts', { ...common, PORT: process.env.DEQUEUER_PORT ?? '8090' });
const enqueuerPort = process.env.PORT ?? '8080';
run('enqueuer', 'enqueuer/main.ts', { ...common, PORT: enqueuerPort });
try {
  await waitReady(`http://127.0.0.1:${enqueuerPort}/readyz`, 60_000);
  await waitReady(`http://127.0.0.1:${process.env.DEQUEUER_PORT ?? '8090'}/readyz`, 60_000);
  if (ui) log(`RabbitMQ management UI: ${redact(ui)}/ (user ${decodeURIComponent(new URL(ui).username)})`);
  for (const [what, path] of [['dashboard', '/ui/'], ['API docs', '/docs']] as const) {
    const at = `http://127.0.0.1:${enqueuerPort}${path}`;
    if (await fetch(at).then((r) => r.ok, () => false)) log(`${what}: ${at}`);
  }
  log(`ready: curl -X POST http://127.0.0.1:${enqueuerPort}/v1/services/echo/echo -H 'content-type: application/json' -d '{"hello":"world"}'`);
} catch (err) {
  log((err as Error).message);
  await stop(1);
}
