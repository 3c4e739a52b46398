// `npm run bench`: the gateway measured side by side with the raw ceilings and a minimal hand-written
// Express pipeline, on one broker and one lean downstream (a plain node:http echo). Starts its own
// processes (echo downstream, dequeuer(s), enqueuer(s), the baselines' fronts and consumers), measures
// each one's CPU per request from /proc/<pid>/stat (and the broker's, found by its AMQP port), stops
// every one of them by PID at the end (also on Ctrl-C) and deletes its broker objects.
//
// Options: --quick (short runs, one each: the harness's smoke test), --scenario NAME (repeatable or
// comma-separated), --profile (CPU profiles of enqueuer and dequeuer into bench/out/profiles),
// --out DIR (where BENCHMARKS.md and latency.svg go). Env: RABBITMQ_URL, BENCH_DURATION_S, BENCH_RUNS,
// BENCH_WARMUP_S, BENCH_SOAK_REQUESTS, BENCH_SERVICE_JSON (merged into the echo service's settings, for
// sweeps), and GW_* / AMQP_* settings passed through to the gateway.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, type } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseServices } from '../shared/config/services.ts';
import { buildTopology, jobLane } from '../shared/topology/topology.ts';
import { findBroker, redactUrl } from '../scripts/lib/find-broker.ts';
import { runRawDrain } from './baselines/raw-drain.ts';
import { fillQueue, runRawPublish } from './baselines/raw-publish.ts';
import { runRawRpc } from './baselines/raw-rpc.ts';
import { pidListeningOn, startCpuWindow, startSyscallWindow, type CpuRole } from './lib/cpu.ts';
import { BullmqControl } from './lib/bullmq.ts';
import { brokerVersion, declareRawQueues, deleteBenchObjects, purgeQueue, queueProbe, queueState, rawNames } from './lib/broker.ts';
import { selfTimeByArea, topSelfTime, type CpuProfile } from './lib/cpu-profile.ts';
import { httpLoad, PAYLOAD_1KIB, probeStatus } from './lib/load.ts';
import { freePort, histogramBuckets, metricValue, ProcessGroup, quantileBetween, rssBytes, scrape, sleep, waitHttpOk, type Child } from './lib/processes.ts';
import { headroomWarning, renderBenchmarksMd, renderCpuTable, renderLatencySvg, renderRatios, renderTable, computeRatios, type RatioRow, type ScenarioReport } from './lib/report.ts';
import { growthBetween, summarize, type RunResult, type Sample } from './lib/stats.ts';

const ROOT = resolve(import.meta.dirname, '..');
const ALL = ['direct', 'raw-rpc', 'express-pipeline', 'express-confirms', 'raw-publish', 'raw-publish-draining', 'express-accept-draining', 'bullmq-draining', 'raw-drain', 'sync', 'scale', 'soak', 'accept-stopped', 'accept-draining', 'drain'] as const;
type ScenarioName = (typeof ALL)[number];

// BENCH_SERVICE_JSON merges into the echo service's settings, for sweeps (e.g. '{"work":{"prefetch":64}}').
const serviceOverrides = JSON.parse(process.env.BENCH_SERVICE_JSON ?? '{}') as Record<string, unknown>;
// The raw consumers take the gateway's work prefetch (its default, or the sweep's), so both sides of a ratio run at the same one.
const WORK_PREFETCH = parseServices({ services: { echo: { url: 'http://127.0.0.1:1', ...serviceOverrides } } }).echo!.work.prefetch;

const TITLES: Record<ScenarioName, { title: string; kind: 'baseline' | 'scenario' }> = {
  direct: { title: 'autocannon → plain node:http echo (no gateway)', kind: 'baseline' },
  'raw-rpc': { title: 'amqplib request-reply, direct reply-to, 64 in flight → consumer (prefetch 64 as rpc.prefetch, undici) → echo', kind: 'baseline' },
  'express-pipeline': { title: 'minimal Express 5 front, shared direct reply-to, no confirms → amqplib consumer (prefetch 64, undici) → echo', kind: 'baseline' },
  'express-confirms': { title: 'the same pipeline with mandatory publishes and publisher confirms (fails fast like the gateway)', kind: 'baseline' },
  'raw-publish': { title: 'confirmed persistent 1 KiB publishes into a quorum queue, 64 unconfirmed', kind: 'baseline' },
  'raw-publish-draining': { title: `the same publishes while a consumer process (prefetch ${WORK_PREFETCH} as work.prefetch, POST to echo + ack) drains the queue`, kind: 'baseline' },
  'express-accept-draining': { title: 'hand-written async front: Express 5, confirmed persistent publish → 202 {id}, no job status; the same consumer draining', kind: 'baseline' },
  'bullmq-draining': { title: 'Redis job queue: Express 5 POST → BullMQ queue.add() → 202 {id}; its Worker (concurrency 64) POSTs to echo while clients submit (broker column: Redis)', kind: 'baseline' },
  'raw-drain': { title: `amqplib consumer, prefetch ${WORK_PREFETCH} as work.prefetch, POST to echo + ack`, kind: 'baseline' },
  sync: { title: 'POST /v1/services/echo/echo, 1 KiB JSON, 1 dequeuer', kind: 'scenario' },
  scale: { title: 'sync with 2 enqueuers (32 clients each) and 2 dequeuers', kind: 'scenario' },
  soak: { title: 'sync at a steady rate, RSS / lag / correlation map sampled', kind: 'scenario' },
  'accept-stopped': { title: 'Prefer: respond-async → 202, dequeuer stopped', kind: 'scenario' },
  'accept-draining': { title: 'Prefer: respond-async → 202, dequeuer draining', kind: 'scenario' },
  drain: { title: 'queued jobs drained by one dequeuer process', kind: 'scenario' },
};

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    scenario: { type: 'string', multiple: true },
    profile: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const quick = args.quick || process.env.BENCH_QUICK === '1';
const selected = new Set<ScenarioName>();
for (const s of (args.scenario ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean)) {
  const names = s === 'accept' ? (['accept-stopped', 'accept-draining'] as const) : [s];
  for (const n of names) {
    if (!(ALL as readonly string[]).includes(n)) {
      process.stderr.write(`unknown scenario ${n}; known: ${ALL.join(', ')}, accept\n`);
      process.exit(2);
    }
    selected.add(n as ScenarioName);
  }
}
if (selected.size === 0) for (const n of ALL) selected.add(n);
const has = (n: ScenarioName): boolean => selected.has(n);

const S = {
  durationS: Number(process.env.BENCH_DURATION_S ?? (quick ? 3 : 10)),
  warmupS: Number(process.env.BENCH_WARMUP_S ?? (quick ? 1 : 5)),
  runs: Number(process.env.BENCH_RUNS ?? (quick ? 1 : 3)),
  connections: 64,
  drainJobs: quick ? 2_000 : 50_000,
  drainMaxS: quick ? 60 : 180,
  soakRequests: Number(process.env.BENCH_SOAK_REQUESTS ?? (quick ? 5_000 : 300_000)),
  soakMaxS: quick ? 30 : 240,
  soakSampleMs: quick ? 250 : 1000,
  // Above what a 10 s raw publish run can fill (a full queue nacks, which would cap the ceiling).
  workMaxLength: 1_000_000,
};
const outDir = resolve(args.out ?? (quick || args.scenario ? join(ROOT, 'bench/out') : ROOT));
const mdPath = join(outDir, 'BENCHMARKS.md');
const svgPath = outDir === ROOT ? join(ROOT, 'bench/latency.svg') : join(outDir, 'latency.svg');
const profileDir = join(ROOT, 'bench/out/profiles');

const log = (msg: string): void => {
  process.stdout.write(`[bench] ${msg}\n`);
};
const group = new ProcessGroup();
process.on('exit', () => group.killAllNow());

// Until the broker and prefix are known there are no broker objects to delete, only children.
let canTeardown = false;
let interrupted = false;
const onSignal = (signal: string): void => {
  if (interrupted) process.exit(130);
  interrupted = true;
  log(`${signal}: stopping children and deleting broker objects`);
  void (canTeardown ? teardown() : group.stopAll(3000)).finally(() => process.exit(130));
};
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));

const loadSamples: number[] = [loadavg()[0]!];
setInterval(() => loadSamples.push(loadavg()[0]!), 10_000).unref();
const broker = await findBroker(process.env, { log });
const url = broker.url;
const prefix = `bench-${randomBytes(3).toString('hex')}`;
log(`broker ${broker.source} ${redactUrl(url)}, prefix ${prefix}, ${quick ? 'quick' : 'full'} mode, scenarios: ${[...selected].join(', ')}`);

const downstreamPort = await freePort();
const enqueuerPorts = [await freePort(), await freePort()];
const enqueuerPort = enqueuerPorts[0]!;
const dequeuerPorts = [await freePort(), await freePort()];
const expressPort = await freePort();
const confirmsPort = await freePort();
const acceptFrontPort = await freePort();
const bullmqFrontPort = await freePort();
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const downstreamUrl = `http://127.0.0.1:${downstreamPort}`;
const servicesDoc = { services: { echo: { url: downstreamUrl, ...serviceOverrides, work: { maxLength: S.workMaxLength, ...(serviceOverrides.work as object | undefined) } } } };
// The broker in use, by the process listening on its AMQP port (other RabbitMQ nodes may run here).
const brokerPid = (() => {
  const first = new URL(url.split(',')[0]!.trim());
  return pidListeningOn(Number(first.port || (first.protocol === 'amqps:' ? 5671 : 5672)));
})();
log(brokerPid === undefined ? 'broker process not found: its CPU is not reported' : `broker process ${brokerPid}`);
const topology = buildTopology(parseServices(servicesDoc), { prefix });
const raw = rawNames(prefix);
const baseEnv: NodeJS.ProcessEnv = {
  ...process.env,
  RABBITMQ_URL: url,
  GW_PREFIX: prefix,
  SERVICES_JSON: JSON.stringify(servicesDoc),
  // No load balancer follows the bench's enqueuer: stop without the readiness drain delay.
  DRAIN_DELAY_MS: process.env.DRAIN_DELAY_MS ?? '0',
  HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
};
// BENCH_GATEWAY_NODE_FLAGS: extra node flags for the enqueuer and dequeuer processes only (e.g. a GC setting to compare).
const gatewayFlags = (process.env.BENCH_GATEWAY_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
const profFlags = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
const serviceUrl = `http://127.0.0.1:${enqueuerPort}/v1/services/echo/echo`;
const serviceUrl2 = `http://127.0.0.1:${enqueuerPorts[1]}/v1/services/echo/echo`;
const jsonHeaders = { 'content-type': 'application/json' };
canTeardown = true;

const enqueuers: Array<Child | undefined> = [undefined, undefined];
const dequeuers: Array<Child | undefined> = [undefined, undefined];
let rawConsumer: Child | undefined;
let downstream: Child | undefined;
let expressFront: Child | undefined;
let expressWorker: Child | undefined;
let confirmsFront: Child | undefined;
/** The BullMQ baseline's queue while it exists (deleted after its step, or by teardown). */
let bullmqControl: BullmqControl | undefined;

async function startEnqueuer(i: 0 | 1 = 0): Promise<void> {
  if (enqueuers[i]) return;
  const child = group.spawnNode(`enqueuer-${i + 1}`, join(ROOT, 'enqueuer/main.ts'), { ...baseEnv, PORT: String(enqueuerPorts[i]) }, [...gatewayFlags, ...profFlags]);
  await waitHttpOk(`http://127.0.0.1:${enqueuerPorts[i]}/readyz`, 60_000, child);
  enqueuers[i] = child;
}
async function stopEnqueuer(i: 0 | 1): Promise<void> {
  const child = enqueuers[i];
  enqueuers[i] = undefined;
  if (child) await group.stop(child, 20_000);
}

type RoleMap = Partial<Record<CpuRole, number | number[]>>;
const pidsOf = (children: ReadonlyArray<Child | undefined>): number[] => children.filter((c): c is Child => c !== undefined).map((c) => c.pid);
/** The gateway's processes in a scenario, by role (what is running right now). */
const gatewayRoles = (): RoleMap => ({
  front: pidsOf(enqueuers), worker: pidsOf(dequeuers), loadgen: process.pid,
  ...(brokerPid ? { broker: brokerPid } : {}), ...(downstream ? { downstream: downstream.pid } : {}),
});
/** Runs `work` with each role's CPU measured over it, per successful operation. */
async function measured(roles: RoleMap, work: () => Promise<RunResult>): Promise<RunResult> {
  const end = startCpuWindow(roles);
  const endSyscalls = startSyscallWindow(roles);
  const r = await work();
  return { ...r, cpu: end(r.count), syscalls: endSyscalls(r.count) };
}
async function startDequeuer(i: 0 | 1): Promise<void> {
  if (dequeuers[i]) return;
  const child = group.spawnNode(`dequeuer-${i + 1}`, join(ROOT, 'dequeuer/main.ts'), { ...baseEnv, PORT: String(dequeuerPorts[i]) }, [...gatewayFlags, ...profFlags]);
  await waitHttpOk(`http://127.0.0.1:${dequeuerPorts[i]}/readyz`, 60_000, child);
  dequeuers[i] = child;
}
async function stopDequeuer(i: 0 | 1): Promise<void> {
  const child = dequeuers[i];
  dequeuers[i] = undefined;
  if (child) await group.stop(child, 20_000);
}

const reports = new Map<ScenarioName, ScenarioReport>();
const results = new Map<ScenarioName, RunResult[]>();
function record(name: ScenarioName, r: RunResult): void {
  const list = results.get(name) ?? [];
  list.push(r);
  results.set(name, list);
  const cpu = Object.entries(r.cpu ?? {}).map(([k, v]) => `${k} ${Math.round(v)}`).join(' / ');
  const sys = Object.entries(r.syscalls ?? {}).map(([k, v]) => `${k} ${v.writes.toFixed(2)}/${v.reads.toFixed(2)}`).join(' / ');
  log(`  ${name} run ${list.length}: ${Math.round(r.throughputPerS)}/s, p50 ${r.p50Ms?.toFixed(1) ?? '—'} ms, p99 ${r.p99Ms?.toFixed(1) ?? '—'} ms, errors ${r.errors}${cpu ? `, CPU µs/op ${cpu}` : ''}${sys ? `, write/read syscalls per op ${sys}` : ''}`);
}
function finish(name: ScenarioName, extra: Partial<ScenarioReport> = {}): void {
  const runs = results.get(name) ?? [];
  reports.set(name, { name, ...TITLES[name], status: runs.length ? 'ok' : 'failed', ...(runs.length ? { summary: summarize(runs) } : {}), ...extra });
}
function fail(name: ScenarioName, err: unknown): void {
  log(`  ${name} failed: ${(err as Error).message}`);
  reports.set(name, { name, ...TITLES[name], status: 'failed', reason: (err as Error).message.split('\n')[0]!.slice(0, 200) });
}
function notAvailable(name: ScenarioName, reason: string): void {
  reports.set(name, { name, ...TITLES[name], status: 'not-available', reason });
}

/** Runs the given scenarios after one warm-up each, interleaving their runs so drift hits all alike. */
async function interleaved(steps: Partial<Record<ScenarioName, { warmup: () => Promise<unknown>; run: () => Promise<RunResult> }>>): Promise<void> {
  const names = (Object.keys(steps) as ScenarioName[]).filter(has);
  const live = new Set(names);
  for (const n of names) {
    log(`warm-up ${n} (${S.warmupS} s)`);
    try {
      await steps[n]!.warmup();
    } catch (err) {
      fail(n, err);
      live.delete(n);
    }
  }
  for (let i = 0; i < S.runs && !interrupted; i++) {
    for (const n of names) {
      if (!live.has(n) || interrupted) continue;
      try {
        record(n, await steps[n]!.run());
      } catch (err) {
        fail(n, err);
        live.delete(n);
      }
    }
  }
  for (const n of live) finish(n);
}

const syncLoad = (durationS: number): Promise<RunResult> =>
  httpLoad({ url: serviceUrl, connections: S.connections, durationS, headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 200 });

/**
 * Sync load split over the two enqueuers (half the clients each, run at once). Throughput and counts
 * add up; p50 and p99 are the larger of the two (the worse side, not a merged histogram).
 */
async function scaleLoad(durationS: number): Promise<RunResult> {
  const half = S.connections / 2;
  const runs = await Promise.all([serviceUrl, serviceUrl2].map((u) =>
    httpLoad({ url: u, connections: half, durationS, headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 200 })));
  const max = (k: 'p50Ms' | 'p99Ms'): number | undefined => {
    const v = runs.map((r) => r[k]).filter((x): x is number => x !== undefined);
    return v.length ? Math.max(...v) : undefined;
  };
  const durationMax = Math.max(...runs.map((r) => r.durationS));
  const count = runs.reduce((n, r) => n + r.count, 0);
  return { throughputPerS: count / durationMax, p50Ms: max('p50Ms'), p99Ms: max('p99Ms'), count, errors: runs.reduce((n, r) => n + r.errors, 0), durationS: durationMax };
}

async function runAll(): Promise<void> {
  downstream = group.spawnNode('downstream', join(ROOT, 'bench/baselines/echo-server.ts'), { ...baseEnv, PORT: String(downstreamPort) });
  await waitHttpOk(`${downstreamUrl}/echo`, 30_000, downstream, { method: 'POST', body: '{}' });
  await declareRawQueues(url, prefix, { rpcMaxLength: 1000, workMaxLength: S.workMaxLength, deliveryLimit: 10 });

  // Request-reply: direct HTTP, raw RPC, the minimal Express pipeline and sync, interleaved.
  if (has('raw-rpc')) {
    rawConsumer = group.spawnNode('raw-rpc-consumer', join(ROOT, 'bench/baselines/raw-rpc-consumer.ts'), {
      ...baseEnv, QUEUE: raw.rpcQueue, DOWNSTREAM_URL: `${downstreamUrl}/echo`, PREFETCH: '64',
    });
    await waitForLine(rawConsumer, '"ready":true', 30_000);
  }
  if (has('express-pipeline')) {
    expressWorker = group.spawnNode('express-worker', join(ROOT, 'bench/baselines/raw-rpc-consumer.ts'), {
      ...baseEnv, QUEUE: raw.xrpcQueue, DOWNSTREAM_URL: `${downstreamUrl}/echo`, PREFETCH: '64',
    });
    await waitForLine(expressWorker, '"ready":true', 30_000);
    expressFront = group.spawnNode('express-front', join(ROOT, 'bench/baselines/express-front.ts'), { ...baseEnv, QUEUE: raw.xrpcQueue, PORT: String(expressPort) }, profFlags);
    await waitForLine(expressFront, '"ready":true', 30_000);
  }
  if (has('express-confirms')) {
    expressWorker ??= group.spawnNode('express-worker', join(ROOT, 'bench/baselines/raw-rpc-consumer.ts'), {
      ...baseEnv, QUEUE: raw.xrpcQueue, DOWNSTREAM_URL: `${downstreamUrl}/echo`, PREFETCH: '64',
    });
    if (!has('express-pipeline')) await waitForLine(expressWorker, '"ready":true', 30_000);
    confirmsFront = group.spawnNode('express-confirms-front', join(ROOT, 'bench/baselines/express-front.ts'), { ...baseEnv, QUEUE: raw.xrpcQueue, PORT: String(confirmsPort), CONFIRMS: '1' });
    await waitForLine(confirmsFront, '"ready":true', 30_000);
  }
  const expressUrl = `http://127.0.0.1:${expressPort}/v1/services/echo/echo`;
  const confirmsUrl = `http://127.0.0.1:${confirmsPort}/v1/services/echo/echo`;
  const expressRoles = (front: Child): RoleMap => ({
    front: front.pid, worker: expressWorker!.pid, loadgen: process.pid,
    ...(brokerPid ? { broker: brokerPid } : {}), downstream: downstream!.pid,
  });
  const rawRpcRoles = (): RoleMap => ({ worker: rawConsumer!.pid, loadgen: process.pid, ...(brokerPid ? { broker: brokerPid } : {}), downstream: downstream!.pid });
  const needStack = ['sync', 'scale', 'soak', 'accept-stopped', 'accept-draining', 'drain'].some((n) => has(n as ScenarioName));
  if (needStack) {
    await startEnqueuer();
    await startDequeuer(0);
  }
  const body = Buffer.from(PAYLOAD_1KIB);
  await interleaved({
    direct: {
      warmup: () => httpLoad({ url: `${downstreamUrl}/echo`, connections: S.connections, durationS: S.warmupS, headers: jsonHeaders, body: PAYLOAD_1KIB }),
      run: () => measured({ loadgen: process.pid, downstream: downstream!.pid }, () =>
        httpLoad({ url: `${downstreamUrl}/echo`, connections: S.connections, durationS: S.durationS, headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 200 })),
    },
    'raw-rpc': {
      warmup: () => runRawRpc({ url, queue: raw.rpcQueue, body, inflight: S.connections, durationS: S.warmupS }),
      run: () => measured(rawRpcRoles(), () => runRawRpc({ url, queue: raw.rpcQueue, body, inflight: S.connections, durationS: S.durationS })),
    },
    'express-pipeline': {
      warmup: () => httpLoad({ url: expressUrl, connections: S.connections, durationS: S.warmupS, headers: jsonHeaders, body: PAYLOAD_1KIB }),
      run: () => measured(expressRoles(expressFront!), () =>
        httpLoad({ url: expressUrl, connections: S.connections, durationS: S.durationS, headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 200 })),
    },
    'express-confirms': {
      warmup: () => httpLoad({ url: confirmsUrl, connections: S.connections, durationS: S.warmupS, headers: jsonHeaders, body: PAYLOAD_1KIB }),
      run: () => measured(expressRoles(confirmsFront!), () =>
        httpLoad({ url: confirmsUrl, connections: S.connections, durationS: S.durationS, headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 200 })),
    },
    sync: { warmup: () => syncLoad(S.warmupS), run: () => measured(gatewayRoles(), () => syncLoad(S.durationS)) },
  });
  for (const c of [rawConsumer, expressFront, confirmsFront, expressWorker]) if (c) await group.stop(c);

  if (has('scale') && !interrupted) {
    try {
      await startEnqueuer(1);
      await startDequeuer(1);
      await interleaved({ scale: { warmup: () => scaleLoad(S.warmupS), run: () => measured(gatewayRoles(), () => scaleLoad(S.durationS)) } });
    } catch (err) {
      fail('scale', err);
    } finally {
      await stopDequeuer(1);
      await stopEnqueuer(1);
    }
  }

  if (has('soak') && !interrupted) {
    try {
      await soak();
    } catch (err) {
      fail('soak', err);
    }
  }

  // Async jobs: probe once; the scenarios run only when the enqueuer answers 202.
  let asyncReason: string | undefined;
  if (needStack && ['accept-stopped', 'accept-draining', 'drain'].some((n) => has(n as ScenarioName))) {
    const status = await probeStatus(serviceUrl, { method: 'POST', headers: { ...jsonHeaders, prefer: 'respond-async' }, body: PAYLOAD_1KIB }).catch((err: unknown) => `error ${(err as Error).message}`);
    if (status !== 202) asyncReason = `the enqueuer answered ${status} (not 202) to Prefer: respond-async`;
    log(asyncReason ? `async jobs: ${asyncReason}` : 'async jobs: available');
  }
  const workQueue = benchWorkQueue();
  const acceptLoad = (durationS: number): Promise<RunResult> =>
    httpLoad({ url: serviceUrl, connections: S.connections, durationS, headers: { ...jsonHeaders, prefer: 'respond-async' }, body: PAYLOAD_1KIB, expectStatus: 202 });

  // Publish: raw publish interleaved with accept (dequeuer stopped), then accept with a draining dequeuer.
  for (const n of ['accept-stopped', 'accept-draining'] as const) if (has(n) && asyncReason) notAvailable(n, asyncReason);
  if (!interrupted && (has('raw-publish') || (!asyncReason && has('accept-stopped')))) {
    if (!asyncReason && has('accept-stopped')) await stopDequeuer(0);
    // Each step starts on an empty queue and empties it after itself: a queue of 100k+ messages left
    // by one side would cost the broker memory and CPU while the other side is measured.
    const emptied = async <T>(queue: string, step: () => Promise<T>): Promise<T> => {
      await purgeQueue(url, queue);
      try {
        return await step();
      } finally {
        await purgeQueue(url, queue);
      }
    };
    await interleaved({
      'raw-publish': {
        warmup: () => emptied(raw.workQueue, () => runRawPublish({ url, queue: raw.workQueue, body, inflight: S.connections, durationS: S.warmupS })),
        run: () => emptied(raw.workQueue, () => measured({ loadgen: process.pid, ...(brokerPid ? { broker: brokerPid } : {}) }, () =>
          runRawPublish({ url, queue: raw.workQueue, body, inflight: S.connections, durationS: S.durationS }))),
      },
      ...(asyncReason ? {} : {
        'accept-stopped': {
          warmup: () => emptied(workQueue, () => acceptLoad(S.warmupS)),
          run: () => emptied(workQueue, () => measured(gatewayRoles(), () => acceptLoad(S.durationS))),
        },
      }),
    });
    await purgeQueue(url, raw.workQueue);
  }
  if (asyncReason && has('accept-draining')) notAvailable('accept-draining', asyncReason);
  if (!interrupted && (has('raw-publish-draining') || has('express-accept-draining') || has('bullmq-draining') || (!asyncReason && has('accept-draining')))) {
    // The gateway's work queue exists only when the gateway runs (the enqueuer declares it).
    if (!asyncReason && has('accept-draining')) {
      await purgeQueue(url, workQueue);
      await startDequeuer(0);
    }
    await purgeQueue(url, raw.workQueue);
    let rawDrainer: Child | undefined;
    if (has('raw-publish-draining') || has('express-accept-draining')) {
      rawDrainer = group.spawnNode('raw-drain-consumer', join(ROOT, 'bench/baselines/raw-drain-consumer.ts'), {
        ...baseEnv, QUEUE: raw.workQueue, DOWNSTREAM_URL: `${downstreamUrl}/echo`, PREFETCH: String(WORK_PREFETCH),
      });
      await waitForLine(rawDrainer, '"ready":true', 30_000);
    }
    let acceptFront: Child | undefined;
    if (has('express-accept-draining')) {
      acceptFront = group.spawnNode('express-accept-front', join(ROOT, 'bench/baselines/express-front.ts'), { ...baseEnv, QUEUE: raw.workQueue, PORT: String(acceptFrontPort), ASYNC: '1' });
      await waitForLine(acceptFront, '"ready":true', 30_000);
    }
    const bullmq = has('bullmq-draining') ? await startBullmq() : undefined;
    const stream = new StreamFigures();
    const backlog = new Backlog();
    // The raw consumer cannot keep up: its backlog is purged after every step, else it would go on
    // draining it (broker, downstream and a core) while the next accept-draining run is measured.
    // The purge stays outside the measured CPU window.
    const rawPublishDraining = async (durationS: number, measure: (work: () => Promise<RunResult>) => Promise<RunResult>): Promise<RunResult> => {
      try {
        return await measure(() => runRawPublish({ url, queue: raw.workQueue, body, inflight: S.connections, durationS }));
      } finally {
        await backlog.take('raw-publish-draining', raw.workQueue);
        await purgeQueue(url, raw.workQueue);
      }
    };
    const rawRoles = (): RoleMap => ({ loadgen: process.pid, worker: rawDrainer!.pid, downstream: downstream!.pid, ...(brokerPid ? { broker: brokerPid } : {}) });
    const acceptFrontLoad = (durationS: number): Promise<RunResult> =>
      httpLoad({ url: `http://127.0.0.1:${acceptFrontPort}/v1/services/echo/echo`, connections: S.connections, durationS, headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 202 });
    // The hand-written front publishes into the raw work queue the raw consumer drains: the same
    // backlog handling as raw-publish-draining, so neither leaves work behind for the next step.
    const expressAcceptDraining = async (durationS: number, measure: (work: () => Promise<RunResult>) => Promise<RunResult>): Promise<RunResult> => {
      try {
        return await measure(() => acceptFrontLoad(durationS));
      } finally {
        await backlog.take('express-accept-draining', raw.workQueue);
        await purgeQueue(url, raw.workQueue);
      }
    };
    const bullmqLoad = (durationS: number): Promise<RunResult> =>
      httpLoad({ url: `http://127.0.0.1:${bullmqFrontPort}/v1/services/echo/echo`, connections: S.connections, durationS, headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 202 });
    const bullmqDraining = async (durationS: number, measure: (work: () => Promise<RunResult>) => Promise<RunResult>): Promise<RunResult> => {
      const b = bullmq!;
      try {
        return await measure(() => bullmqLoad(durationS));
      } finally {
        backlog.set('bullmq-draining', await b.control.waiting());
        await b.control.drain();
      }
    };
    await interleaved({
      'raw-publish-draining': {
        warmup: () => rawPublishDraining(S.warmupS, (work) => work()),
        run: async () => backlog.count('raw-publish-draining', await rawPublishDraining(S.durationS, (work) => measured(rawRoles(), work))),
      },
      ...(acceptFront ? {
        'express-accept-draining': {
          warmup: () => expressAcceptDraining(S.warmupS, (work) => work()),
          run: async () => backlog.count('express-accept-draining', await expressAcceptDraining(S.durationS, (work) => measured({ ...rawRoles(), front: acceptFront.pid }, work))),
        },
      } : {}),
      ...(bullmq ? {
        'bullmq-draining': {
          warmup: () => bullmqDraining(S.warmupS, (work) => work()),
          run: async () => backlog.count('bullmq-draining', await bullmqDraining(S.durationS, (work) => measured(bullmq.roles, work))),
        },
      } : {}),
      ...(asyncReason ? {} : {
        'accept-draining': {
          warmup: () => acceptLoad(S.warmupS),
          run: async () => {
            const before = await stream.scrape();
            const r = await measured(gatewayRoles(), () => acceptLoad(S.durationS));
            await backlog.take('accept-draining', workQueue);
            stream.add(before, await stream.scrapeWhenDrained(workQueue), r.count);
            return backlog.count('accept-draining', r);
          },
        },
      }),
    });
    for (const c of [rawDrainer, acceptFront, bullmq?.front, bullmq?.worker]) if (c) await group.stop(c);
    await bullmqControl?.destroy();
    bullmqControl = undefined;
    await purgeQueue(url, raw.workQueue);
    const report = reports.get('accept-draining');
    if (report?.status === 'ok') {
      const { notes, checks } = stream.report();
      report.notes = [...(report.notes ?? []), ...notes];
      report.checks = [...(report.checks ?? []), ...checks];
    }
    for (const name of ['raw-publish-draining', 'express-accept-draining', 'bullmq-draining', 'accept-draining'] as const) {
      const r = reports.get(name);
      const notes = [brokerShare(r), backlog.note(name)].filter((n): n is string => n !== undefined);
      if (r?.status === 'ok' && notes.length) r.notes = [...(r.notes ?? []), ...notes];
    }
  }

  // Drain: raw drain interleaved with the dequeuer draining jobs the enqueuer accepted.
  if (has('drain') && asyncReason) notAvailable('drain', asyncReason);
  if (!interrupted && (has('raw-drain') || (!asyncReason && has('drain')))) {
    const rawDrainRun = async (count: number): Promise<RunResult> => {
      await purgeQueue(url, raw.workQueue);
      const filled = await fillQueue(url, raw.workQueue, body, count, S.drainMaxS);
      // The raw drain consumer runs inside the bench process: it is the worker here.
      return measured({ worker: process.pid, ...(brokerPid ? { broker: brokerPid } : {}), downstream: downstream!.pid }, () =>
        runRawDrain({ url, queue: raw.workQueue, count: filled, prefetch: WORK_PREFETCH, downstreamUrl: `${downstreamUrl}/echo`, maxDurationS: S.drainMaxS }));
    };
    await interleaved({
      'raw-drain': { warmup: () => rawDrainRun(Math.min(2000, S.drainJobs)), run: () => rawDrainRun(S.drainJobs) },
      ...(asyncReason ? {} : { drain: { warmup: () => drainRun(Math.min(2000, S.drainJobs)), run: () => drainRun(S.drainJobs) } }),
    });
  }
}

/**
 * Events-stream figures of the accept-draining runs, from the services' own metrics scraped around
 * each run: stream messages per accepted job (the applied offset moves by one per stream message,
 * an offset the broker assigned), what batching adds to visibility (p99 of the oldest transition's
 * wait in the batcher) and the end-to-end visibility p99 (batcher → broker → replica).
 */
class StreamFigures {
  #perJob: number[] = [];
  #waitP99: number[] = [];
  #visibilityP99: number[] = [];
  #waitP50: number[] = [];
  #loopLag: number[] = [];
  /** p99 batching wait of each process alone (ms): which one's flushes are late. */
  #waitP99Enq: number[] = [];
  #waitP99Deq: number[] = [];
  #loopLagDeq: number[] = [];

  async scrape(): Promise<{ enq: string; deq: string }> {
    const [enq, deq] = await Promise.all([scrape(`http://127.0.0.1:${enqueuerPort}/metrics`), scrape(`http://127.0.0.1:${dequeuerPorts[0]}/metrics`)]);
    return { enq: enq ?? '', deq: deq ?? '' };
  }

  /** Scrapes once the work queue is empty (at most 60 s later): every job of the run has its transitions out. */
  async scrapeWhenDrained(queue: string): Promise<{ enq: string; deq: string }> {
    const until = Date.now() + 60_000;
    while (Date.now() < until && (await queueState(url, queue)).messages > 0) await sleep(100);
    await sleep(300);
    return this.scrape();
  }

  add(before: { enq: string; deq: string }, after: { enq: string; deq: string }, jobs: number): void {
    const o0 = metricValue(before.enq, 'gw_events_stream_offset');
    const o1 = metricValue(after.enq, 'gw_events_stream_offset');
    if (o0 !== undefined && o1 !== undefined && jobs > 0) this.#perJob.push((o1 - o0) / jobs);
    const waitBefore = sumMaps(histogramBuckets(before.enq, 'gw_event_batch_wait_seconds'), histogramBuckets(before.deq, 'gw_event_batch_wait_seconds'));
    const waitAfter = sumMaps(histogramBuckets(after.enq, 'gw_event_batch_wait_seconds'), histogramBuckets(after.deq, 'gw_event_batch_wait_seconds'));
    const wait = quantileBetween(waitBefore, waitAfter, 0.99);
    if (wait !== undefined) this.#waitP99.push(wait * 1000);
    const wait50 = quantileBetween(waitBefore, waitAfter, 0.5);
    if (wait50 !== undefined) this.#waitP50.push(wait50 * 1000);
    const lag = metricValue(after.enq, 'nodejs_eventloop_lag_p99_seconds');
    if (lag !== undefined) this.#loopLag.push(lag * 1000);
    const lagDeq = metricValue(after.deq, 'nodejs_eventloop_lag_p99_seconds');
    if (lagDeq !== undefined) this.#loopLagDeq.push(lagDeq * 1000);
    for (const [side, into] of [['enq', this.#waitP99Enq], ['deq', this.#waitP99Deq]] as const) {
      const w = quantileBetween(histogramBuckets(before[side], 'gw_event_batch_wait_seconds'), histogramBuckets(after[side], 'gw_event_batch_wait_seconds'), 0.99);
      if (w !== undefined) into.push(w * 1000);
    }
    const vis = quantileBetween(histogramBuckets(before.enq, 'gw_events_visibility_seconds'), histogramBuckets(after.enq, 'gw_events_visibility_seconds'), 0.99);
    if (vis !== undefined) this.#visibilityP99.push(vis * 1000);
  }

  report(): { notes: string[]; checks: RatioRow[] } {
    const med = (v: number[]): number | undefined => (v.length ? [...v].sort((a, b) => a - b)[v.length >> 1] : undefined);
    const perJob = med(this.#perJob);
    const wait = med(this.#waitP99);
    const vis = med(this.#visibilityP99);
    const wait50 = med(this.#waitP50);
    const lag = med(this.#loopLag);
    const fmt = (v: number | undefined, unit = ''): string => (v === undefined ? 'n/a' : `${Number.isFinite(v) ? v.toFixed(unit ? 0 : 3) : '> max bucket'}${unit}`);
    return {
      notes: [
        `events stream: ${fmt(perJob)} stream messages per accepted job (runs: ${this.#perJob.map((v) => v.toFixed(3)).join(', ') || 'n/a'}); ` +
        `batching wait p50 ≤ ${fmt(wait50, ' ms')}, p99 ≤ ${fmt(wait, ' ms')}, visibility (batcher → broker → replica) p99 ≤ ${fmt(vis, ' ms')} (bucket upper bounds); ` +
        `enqueuer event-loop lag p99 ${fmt(lag, ' ms')}, dequeuer ${fmt(med(this.#loopLagDeq), ' ms')}; batching wait p99 by process: enqueuer ≤ ${fmt(med(this.#waitP99Enq), ' ms')}, dequeuer ≤ ${fmt(med(this.#waitP99Deq), ' ms')}.`,
      ],
      checks: [
        { label: 'accept-draining: events-stream messages per job', value: perJob, target: '≤ 0.20', met: perJob === undefined ? undefined : perJob <= 0.2, display: fmt(perJob) },
        { label: 'accept-draining: what batching adds to visibility (p99 wait in the batcher)', value: wait, target: '≤ 10 ms', met: wait === undefined ? undefined : wait <= 10, display: fmt(wait, ' ms') },
      ],
    };
  }
}

function sumMaps(a: Map<number, number>, b: Map<number, number>): Map<number, number> {
  const out = new Map(a);
  for (const [k, v] of b) out.set(k, (out.get(k) ?? 0) + v);
  return out;
}

/** The broker's CPU in a scenario: cores it used at the median throughput, and its share of all the processes' CPU. */
function brokerShare(r: ScenarioReport | undefined): string | undefined {
  const cpu = r?.summary?.cpu;
  if (!cpu || cpu.broker === undefined || !r.summary) return undefined;
  const total = Object.values(cpu).reduce((n, v) => n + (v ?? 0), 0);
  const cores = (cpu.broker * r.summary.throughputMedianPerS) / 1e6;
  return `broker CPU: ${Math.round(cpu.broker)} µs per operation = ${(cores * 100).toFixed(0)}% of a core at the median throughput, ${((cpu.broker / total) * 100).toFixed(0)}% of all measured CPU.`;
}

/**
 * How much of what a draining scenario accepted its consumer had not worked off when the run ended
 * (the queue's depth then, over the messages accepted in the run): the consumers compete with the
 * broker and the publisher for the same cores, and a baseline whose consumer falls behind does less
 * work per accepted message than a gateway whose dequeuer keeps up.
 */
class Backlog {
  readonly #depth = new Map<ScenarioName, number>();
  readonly #shares = new Map<ScenarioName, number[]>();
  /** Reads the queue's depth now (right after a run), for the next {@link Backlog.count}. */
  async take(name: ScenarioName, queue: string): Promise<void> {
    this.#depth.set(name, (await queueState(url, queue)).messages);
  }
  /** Records a depth read elsewhere (the BullMQ baseline's waiting jobs). */
  set(name: ScenarioName, depth: number): void {
    this.#depth.set(name, depth);
  }
  /** Records the depth taken over the run's accepted count; passes the result through. */
  count(name: ScenarioName, r: RunResult): RunResult {
    const depth = this.#depth.get(name);
    if (depth !== undefined && r.count > 0) this.#shares.set(name, [...(this.#shares.get(name) ?? []), depth / r.count]);
    return r;
  }
  note(name: ScenarioName): string | undefined {
    const shares = this.#shares.get(name);
    if (!shares?.length) return undefined;
    const sorted = [...shares].sort((a, b) => a - b);
    const pct = (v: number): string => `${(v * 100).toFixed(0)}%`;
    return `still queued when the run ended (not yet worked off by the consumer): ${pct(sorted[Math.floor(sorted.length / 2)]!)} of the messages accepted in the run (runs: ${shares.map(pct).join(', ')}).`;
  }
}

/**
 * Starts the BullMQ baseline (its front and worker processes, on a queue named after the bench's
 * prefix) when Redis answers; otherwise marks it not available and returns undefined.
 */
async function startBullmq(): Promise<{ control: BullmqControl; front: Child; worker: Child; roles: RoleMap } | undefined> {
  const name = `${prefix}-bullmq`;
  const control = await BullmqControl.open(redisUrl, name);
  if (typeof control === 'string') {
    notAvailable('bullmq-draining', control);
    return undefined;
  }
  bullmqControl = control;
  const env = { ...baseEnv, REDIS_URL: redisUrl, QUEUE: name };
  const worker = group.spawnNode('bullmq-worker', join(ROOT, 'bench/baselines/bullmq-worker.ts'), { ...env, DOWNSTREAM_URL: `${downstreamUrl}/echo`, CONCURRENCY: '64' });
  await waitForLine(worker, '"ready":true', 30_000);
  const front = group.spawnNode('bullmq-front', join(ROOT, 'bench/baselines/bullmq-front.ts'), { ...env, PORT: String(bullmqFrontPort) });
  await waitForLine(front, '"ready":true', 30_000);
  const redisPid = pidListeningOn(Number(new URL(redisUrl).port || 6379));
  const roles: RoleMap = { front: front.pid, worker: worker.pid, loadgen: process.pid, downstream: downstream!.pid, ...(redisPid ? { broker: redisPid } : {}) };
  return { control, front, worker, roles };
}

/** The work lane the bench's jobs go to: the lane of the development-mode tenant `default` (no API keys). */
function benchWorkQueue(): string {
  return topology.names.workQueue('echo', jobLane(topology, { service: 'echo', tenant: 'default' }));
}

/** Fills the work queue through the enqueuer (dequeuer stopped), then times one dequeuer draining it. */
async function drainRun(count: number): Promise<RunResult> {
  const queue = benchWorkQueue();
  await stopDequeuer(0);
  await purgeQueue(url, queue);
  const fill = await httpLoad({
    url: serviceUrl, connections: S.connections, amount: count, maxDurationS: S.drainMaxS,
    headers: { ...jsonHeaders, prefer: 'respond-async' }, body: PAYLOAD_1KIB, expectStatus: 202,
  });
  const queued = (await queueState(url, queue)).messages;
  const child = group.spawnNode('dequeuer-1', join(ROOT, 'dequeuer/main.ts'), { ...baseEnv, PORT: String(dequeuerPorts[0]) }, [...gatewayFlags, ...profFlags]);
  dequeuers[0] = child;
  // The clock starts when the dequeuer's consumer appears, so its process start-up is not counted.
  const untilMs = Date.now() + S.drainMaxS * 1000;
  let startedMs: number | undefined;
  let endCpu: ((ops: number) => RunResult['cpu']) | undefined;
  let left = queued;
  const probe = await queueProbe(url);
  try {
    while (Date.now() < untilMs) {
      const st = await probe.state(queue);
      left = st.messages;
      if (startedMs === undefined && (st.consumers > 0 || st.messages < queued)) {
        startedMs = Date.now();
        endCpu = startCpuWindow(gatewayRoles());
      }
      if (startedMs !== undefined && st.messages === 0) break;
      await sleep(50);
    }
  } finally {
    await probe.close();
  }
  const cpu = endCpu?.(queued - left);
  await waitHttpOk(`http://127.0.0.1:${dequeuerPorts[0]}/readyz`, 30_000, child);
  const durationS = (Date.now() - (startedMs ?? Date.now())) / 1000 || 1;
  return { throughputPerS: (queued - left) / durationS, p50Ms: undefined, p99Ms: undefined, count: queued - left, errors: fill.errors + left, durationS, ...(cpu ? { cpu } : {}) };
}

/** Sync load at a steady rate with RSS, event-loop lag and correlation map sampled; growth 25% → 100%. */
async function soak(): Promise<void> {
  await startEnqueuer();
  await startDequeuer(0);
  const syncMedian = reports.get('sync')?.summary?.throughputMedianPerS;
  const ratePerS = syncMedian ? Math.max(100, Math.round(syncMedian * 0.7)) : undefined;
  const expectedS = ratePerS ? S.soakRequests / ratePerS : undefined;
  log(`soak: ${S.soakRequests} requests${ratePerS ? ` at ${ratePerS}/s (≈${Math.round(expectedS!)} s)` : ' at full speed'}, at most ${S.soakMaxS} s`);
  const series: Record<string, Sample[]> = { enqRss: [], deqRss: [], enqLag: [], deqLag: [], corr: [] };
  const enq = enqueuers[0]!;
  const deq = dequeuers[0]!;
  const t0 = Date.now();
  let running = true;
  const sampler = (async () => {
    while (running && Date.now() - t0 < (S.soakMaxS + 10) * 1000) {
      const atMs = Date.now() - t0;
      const push = (k: string, v: number | undefined): void => {
        if (v !== undefined && Number.isFinite(v)) series[k]!.push({ atMs, value: v });
      };
      push('enqRss', rssBytes(enq.pid));
      push('deqRss', rssBytes(deq.pid));
      const [em, dm] = await Promise.all([scrape(`http://127.0.0.1:${enqueuerPort}/metrics`), scrape(`http://127.0.0.1:${dequeuerPorts[0]}/metrics`)]);
      if (em) {
        push('enqLag', metricValue(em, 'nodejs_eventloop_lag_p99_seconds'));
        push('corr', metricValue(em, 'gw_reply_correlation_inflight'));
      }
      if (dm) push('deqLag', metricValue(dm, 'nodejs_eventloop_lag_p99_seconds'));
      await sleep(S.soakSampleMs);
    }
  })();
  const result = await measured(gatewayRoles(), () => httpLoad({
    url: serviceUrl, connections: S.connections, amount: S.soakRequests, maxDurationS: S.soakMaxS,
    headers: jsonHeaders, body: PAYLOAD_1KIB, expectStatus: 200, ...(ratePerS ? { overallRatePerS: ratePerS } : {}),
  }));
  running = false;
  await sampler;
  const totalMs = result.durationS * 1000;
  await sleep(1000);
  const corrAfter = metricValue((await scrape(`http://127.0.0.1:${enqueuerPort}/metrics`)) ?? '', 'gw_reply_correlation_inflight');
  record('soak', result);
  const mib = (v: number | undefined): string => (v === undefined ? '?' : `${(v / 2 ** 20).toFixed(0)} MiB`);
  const at = (k: string, f: number): number | undefined => {
    const s = series[k]!.filter((x) => Math.abs(x.atMs - f * totalMs) <= 0.05 * totalMs).map((x) => x.value).sort((a, b) => a - b);
    return s.length ? s[s.length >> 1] : undefined;
  };
  const pct = (g: number | undefined): string => (g === undefined ? 'n/a' : `${g >= 0 ? '+' : ''}${(g * 100).toFixed(1)}%`);
  const checks: RatioRow[] = [];
  const notes: string[] = [`${result.count} requests in ${result.durationS.toFixed(0)} s${ratePerS ? ` at a target rate of ${ratePerS}/s` : ''}, ${result.errors} errors.`];
  for (const [k, label] of [['enqRss', 'enqueuer RSS'], ['deqRss', 'dequeuer RSS']] as const) {
    const g = growthBetween(series[k]!, totalMs, 0.25, 0.95);
    checks.push({ label: `soak: ${label} growth 25% → 100%`, value: g, target: '≤ 10%', met: g === undefined ? undefined : g <= 0.1, display: pct(g) });
    notes.push(`${label}: ${mib(at(k, 0.25))} at 25%, ${mib(at(k, 0.95))} at the end (${pct(g)}).`);
  }
  const ms = (v: number | undefined): string => (v === undefined ? '?' : `${(v * 1000).toFixed(1)} ms`);
  notes.push(`event-loop lag p99: enqueuer ${ms(at('enqLag', 0.25))} at 25% → ${ms(at('enqLag', 0.95))} at the end; dequeuer ${ms(at('deqLag', 0.25))} → ${ms(at('deqLag', 0.95))}.`);
  const corrMax = series.corr!.reduce((m, s) => Math.max(m, s.value), 0);
  notes.push(`correlation map: ≤ ${corrMax} entries during the run (64 clients), ${corrAfter ?? '?'} after it.`);
  checks.push({ label: 'soak: correlation map empty after the run', value: corrAfter, target: '= 0', met: corrAfter === undefined ? undefined : corrAfter === 0, display: String(corrAfter ?? 'n/a') });
  finish('soak', { notes, checks });
}

function waitForLine(child: Child, needle: string, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${child.name} not ready within ${timeoutMs} ms:\n${child.tail()}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      if (chunk.toString('utf8').includes(needle)) {
        clearTimeout(timer);
        child.process.stdout!.off('data', onData);
        resolvePromise();
      }
    };
    child.process.stdout!.on('data', onData);
    void child.exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${child.name} exited:\n${child.tail()}`));
    });
  });
}

async function teardown(): Promise<void> {
  await group.stopAll(20_000);
  // The BullMQ baseline's keys, also when a run is interrupted inside the draining step.
  await bullmqControl?.destroy().catch((err: unknown) => log(`could not delete the BullMQ baseline's Redis keys: ${(err as Error).message}`));
  bullmqControl = undefined;
  await deleteBenchObjects(url, prefix, topology).catch((err: unknown) => log(`could not delete broker objects: ${(err as Error).message}`));
  await broker.node?.destroy();
}

const startedAt = new Date();
let failed = false;
try {
  if (args.profile) mkdirSync(profileDir, { recursive: true });
  await runAll();
} catch (err) {
  failed = true;
  log(`bench failed: ${(err as Error).stack ?? String(err)}`);
} finally {
  await teardown();
}
if (interrupted) process.exit(130);

const ordered = ALL.filter((n) => reports.has(n)).map((n) => reports.get(n)!);
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memoryGiB: totalmem() / 2 ** 30,
  node: process.version,
  rabbitmq: await brokerVersion(url).catch(() => 'unknown'),
  os: `${type()} ${release()}`,
  date: startedAt.toISOString().replace(/\.\d+Z$/, 'Z'),
  command: [
    ...['BENCH_DURATION_S', 'BENCH_RUNS', 'BENCH_SOAK_REQUESTS'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]}`),
    `npm run bench${quick || args.scenario ? ' --' : ''}${quick ? ' --quick' : ''}${args.scenario ? ` --scenario ${[...selected].join(',')}` : ''}`,
  ].join(' '),
  quick,
  loadAverage: (() => {
    const sorted = [...loadSamples, loadavg()[0]!].sort((a, b) => a - b);
    return { min: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]!, max: sorted[sorted.length - 1]! };
  })(),
};
mkdirSync(outDir, { recursive: true });
mkdirSync(dirname(svgPath), { recursive: true });
const limits = readFileSync(join(ROOT, 'bench/what-limits-it.md'), 'utf8');
writeFileSync(mdPath, renderBenchmarksMd(machine, ordered, limits, relative(dirname(mdPath), svgPath)));
writeFileSync(svgPath, renderLatencySvg(ordered));
const finalRatios = computeRatios(ordered);
const warning = headroomWarning(finalRatios);
process.stdout.write(`\n${renderTable(ordered)}\n\nCPU µs per operation:\n${renderCpuTable(ordered)}\n\n${renderRatios(finalRatios)}\n\n${warning ? `${warning}\n\n` : ''}`);
for (const r of ordered) for (const n of r.notes ?? []) process.stdout.write(`- ${r.name}: ${n}\n`);
log(`wrote ${relative(ROOT, mdPath)} and ${relative(ROOT, svgPath)} in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s`);

if (args.profile) {
  for (const file of readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as CpuProfile;
    process.stdout.write(`\nprofile ${file}:\n`);
    for (const t of topSelfTime(profile, 15)) process.stdout.write(`  ${t.percent.toFixed(1).padStart(5)}%  ${t.fn}  ${t.where}\n`);
    process.stdout.write(`  by area: ${selfTimeByArea(profile).slice(0, 8).map((a) => `${a.area} ${a.percent.toFixed(0)}%`).join(', ')}\n`);
  }
}
const anyFailed = ordered.some((r) => r.status === 'failed');
process.exit(failed || anyFailed ? 1 : 0);
