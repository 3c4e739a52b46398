// `npm start`: runs the demo downstream (:8081, service `echo`), the dequeuer (:8090) and the
// enqueuer (:8080) against RABBITMQ_URL, or the local broker, or a private node it starts.
// Ctrl-C stops all three gracefully (and the private node, if one was started): the children run in
// process groups of their own, so the terminal's SIGINT reaches only this launcher, which stops them
// one at a time in reverse start order (enqueuer, dequeuer, then the downstream they call), each
// with one SIGTERM; further Ctrl-Cs do not cut the drain short.
import { spawn, type ChildProcess } from 'node:child_process';
import { findBroker } from './lib/find-broker.ts';

const log = (msg: string): void => {
  process.stdout.write(`[start] ${msg}\n`);
};

const broker = await findBroker(process.env, { log });
log(`broker: ${broker.source} ${broker.url.replace(/:[^:@/]*@/, ':***@')}${broker.managementUrl ? ` (management UI ${broker.managementUrl.replace(/:[^:@/]*@/, ':***@')})` : ''}`);

const demoPort = process.env.DEMO_PORT ?? '8081';
const common = {
  ...process.env,
  RABBITMQ_URL: broker.url,
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
  log(`ready: curl -X POST http://127.0.0.1:${enqueuerPort}/v1/services/echo/echo -H 'content-type: application/json' -d '{"hello":"world"}'`);
} catch (err) {
  log((err as Error).message);
  await stop(1);
}
