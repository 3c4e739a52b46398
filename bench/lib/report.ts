import { CPU_ROLES, type CpuRole } from './cpu.ts';
import { ratio, type Summary } from './stats.ts';

/** What happened to one scenario or baseline in a bench run. */
export interface ScenarioReport {
  /** Short id used on the command line (`--scenario sync`). */
  name: string;
  /** What the row measures, for the table. */
  title: string;
  kind: 'baseline' | 'scenario';
  status: 'ok' | 'not-available' | 'failed';
  /** Why it is not available or failed. */
  reason?: string;
  summary?: Summary;
  /** Extra lines shown under the table (e.g. soak growth). */
  notes?: string[];
  /** Pass/fail checks of its own (e.g. soak growth ≤ 10%), listed with the ratios. */
  checks?: RatioRow[];
}

/** A target: `scenario` compared with `baseline` on one metric. */
export interface Target {
  label: string;
  scenario: string;
  baseline: string;
  metric: 'throughput' | 'p99';
  /** `min`: the ratio must be at least `bound`; `max`: at most. */
  kind: 'min' | 'max';
  bound: number;
}

/** Direct HTTP must be this many times the sync throughput, else the downstream limits the run. */
export const DOWNSTREAM_HEADROOM = 8;
export const HEADROOM_LABEL = 'direct HTTP / sync throughput (downstream headroom)';

/** The targets issues 7, 11 and 14 set. */
export const TARGETS: readonly Target[] = [
  { label: 'sync throughput vs minimal Express pipeline', scenario: 'sync', baseline: 'express-pipeline', metric: 'throughput', kind: 'min', bound: 1.0 },
  { label: 'sync p99 vs minimal Express pipeline p99', scenario: 'sync', baseline: 'express-pipeline', metric: 'p99', kind: 'max', bound: 1.2 },
  { label: HEADROOM_LABEL, scenario: 'direct', baseline: 'sync', metric: 'throughput', kind: 'min', bound: DOWNSTREAM_HEADROOM },
  { label: 'sync throughput vs raw RPC', scenario: 'sync', baseline: 'raw-rpc', metric: 'throughput', kind: 'min', bound: 0.8 },
  { label: 'sync p99 vs raw RPC p99', scenario: 'sync', baseline: 'raw-rpc', metric: 'p99', kind: 'max', bound: 1.5 },
  { label: 'async accept (dequeuer stopped) vs raw publish', scenario: 'accept-stopped', baseline: 'raw-publish', metric: 'throughput', kind: 'min', bound: 0.7 },
  { label: 'async accept (dequeuer draining) vs raw publish', scenario: 'accept-draining', baseline: 'raw-publish', metric: 'throughput', kind: 'min', bound: 0.7 },
  { label: 'async accept (dequeuer draining) vs raw publish with a consumer draining', scenario: 'accept-draining', baseline: 'raw-publish-draining', metric: 'throughput', kind: 'min', bound: 0.55 },
  { label: 'drain vs raw drain', scenario: 'drain', baseline: 'raw-drain', metric: 'throughput', kind: 'min', bound: 0.8 },
];

/** Ratios shown for context, without a target. */
export const CONTEXT_RATIOS: readonly Omit<Target, 'kind' | 'bound'>[] = [
  { label: 'raw RPC throughput vs direct HTTP', scenario: 'raw-rpc', baseline: 'direct', metric: 'throughput' },
  { label: 'sync throughput vs direct HTTP', scenario: 'sync', baseline: 'direct', metric: 'throughput' },
  { label: 'scale (2 enqueuers, 2 dequeuers) vs sync (1 each)', scenario: 'scale', baseline: 'sync', metric: 'throughput' },
  { label: 'Express pipeline with confirms vs without (the price of confirms)', scenario: 'express-confirms', baseline: 'express-pipeline', metric: 'throughput' },
  { label: 'sync throughput vs Express pipeline with confirms', scenario: 'sync', baseline: 'express-confirms', metric: 'throughput' },
  { label: 'async accept (dequeuer draining) vs BullMQ on Redis (its worker draining)', scenario: 'accept-draining', baseline: 'bullmq-draining', metric: 'throughput' },
  { label: 'async accept (dequeuer draining) vs hand-written Express async front (consumer draining)', scenario: 'accept-draining', baseline: 'express-accept-draining', metric: 'throughput' },
  { label: 'hand-written Express async front vs raw publish with a consumer draining', scenario: 'express-accept-draining', baseline: 'raw-publish-draining', metric: 'throughput' },
  { label: 'BullMQ on Redis vs raw publish with a consumer draining', scenario: 'bullmq-draining', baseline: 'raw-publish-draining', metric: 'throughput' },
];

/** One evaluated ratio. */
export interface RatioRow {
  label: string;
  value: number | undefined;
  /** e.g. `≥ 0.80`; empty for context ratios. */
  target: string;
  /** undefined when it could not be computed or has no target. */
  met: boolean | undefined;
  /** How to show `value` when a plain 2-decimal ratio would mislead (e.g. `+4.1%`). */
  display?: string;
}

function metricOf(s: Summary | undefined, metric: 'throughput' | 'p99'): number | undefined {
  if (!s) return undefined;
  return metric === 'throughput' ? s.throughputMedianPerS : s.p99Ms;
}

/** Evaluates the targets and context ratios against the reports of one run (medians over runs). */
export function computeRatios(reports: readonly ScenarioReport[]): RatioRow[] {
  const byName = new Map(reports.filter((r) => r.status === 'ok').map((r) => [r.name, r.summary]));
  const rows: RatioRow[] = [];
  for (const t of TARGETS) {
    const value = ratio(metricOf(byName.get(t.scenario), t.metric), metricOf(byName.get(t.baseline), t.metric));
    const met = value === undefined ? undefined : t.kind === 'min' ? value >= t.bound : value <= t.bound;
    rows.push({ label: t.label, value, target: `${t.kind === 'min' ? '≥' : '≤'} ${t.bound.toFixed(2)}`, met });
  }
  const sync = byName.get('sync');
  if (sync) rows.push({ label: 'sync errors', value: sync.errors, target: '= 0', met: sync.errors === 0, display: String(sync.errors) });
  for (const r of reports) if (r.status === 'ok') rows.push(...(r.checks ?? []));
  for (const c of CONTEXT_RATIOS) {
    rows.push({ label: c.label, value: ratio(metricOf(byName.get(c.scenario), c.metric), metricOf(byName.get(c.baseline), c.metric)), target: '', met: undefined });
  }
  return rows;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number | undefined): string => (n === undefined ? '—' : n < 10 ? n.toFixed(1) : Math.round(n).toString());

/** Escapes `|` so a cell cannot break a markdown table. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

const ROLE_TITLES: Record<CpuRole, string> = { front: 'front', worker: 'worker', broker: 'broker', loadgen: 'load generator', downstream: 'downstream' };

/**
 * CPU µs per operation per process (median of the runs), one row per scenario that measured any:
 * where the cost of one request sits. `—` where a role does not exist in that scenario.
 */
export function renderCpuTable(reports: readonly ScenarioReport[]): string {
  const lines = [
    `| scenario | ${CPU_ROLES.map((r) => ROLE_TITLES[r]).join(' | ')} | total |`,
    `|---|${CPU_ROLES.map(() => '---:').join('|')}|---:|`,
  ];
  for (const r of reports) {
    const cpu = r.summary?.cpu;
    if (r.status !== 'ok' || !cpu || Object.keys(cpu).length === 0) continue;
    const total = CPU_ROLES.reduce((n, role) => n + (cpu[role] ?? 0), 0);
    const name = r.kind === 'baseline' ? `${r.name} (baseline)` : r.name;
    lines.push(`| ${cell(name)} | ${CPU_ROLES.map((role) => (cpu[role] === undefined ? '—' : Math.round(cpu[role]).toString())).join(' | ')} | ${Math.round(total)} |`);
  }
  return lines.join('\n');
}

/** Write / read system calls per operation per role (socket writes and reads are most of them). */
export function renderSyscallTable(reports: readonly ScenarioReport[]): string {
  const lines = [
    `| scenario | ${CPU_ROLES.map((r) => ROLE_TITLES[r]).join(' | ')} |`,
    `|---|${CPU_ROLES.map(() => '---:').join('|')}|`,
  ];
  for (const r of reports) {
    const sys = r.summary?.syscalls;
    if (r.status !== 'ok' || !sys || Object.keys(sys).length === 0) continue;
    const name = r.kind === 'baseline' ? `${r.name} (baseline)` : r.name;
    lines.push(`| ${cell(name)} | ${CPU_ROLES.map((role) => (sys[role] === undefined ? '—' : `${sys[role].writes.toFixed(2)} / ${sys[role].reads.toFixed(2)}`)).join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The sentence a run prints when the downstream, not the gateway, may be what limits it. */
export function headroomWarning(rows: readonly RatioRow[]): string | undefined {
  const row = rows.find((r) => r.label === HEADROOM_LABEL);
  if (!row || row.met !== false) return undefined;
  return `**The downstream is the bottleneck of this run**: direct HTTP served only ${row.value!.toFixed(1)}x the sync throughput (< ${DOWNSTREAM_HEADROOM}x), so the gateway ratios above are flattened by the downstream.`;
}

/** The results table (GitHub markdown). */
export function renderTable(reports: readonly ScenarioReport[]): string {
  const lines = [
    '| scenario | what | runs | throughput /s, median (min–max) | p50 ms | p99 ms | errors |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of reports) {
    const name = r.kind === 'baseline' ? `${r.name} (baseline)` : r.name;
    const s = r.summary;
    if (r.status !== 'ok' || !s) {
      const what = r.status === 'not-available' ? 'not available' : 'failed';
      lines.push(`| ${cell(name)} | ${cell(r.title)} | — | ${what}${r.reason ? `: ${cell(r.reason)}` : ''} | — | — | — |`);
      continue;
    }
    lines.push(
      `| ${cell(name)} | ${cell(r.title)} | ${s.runs} | ${fmtInt(s.throughputMedianPerS)} (${fmtInt(s.throughputMinPerS)}–${fmtInt(s.throughputMaxPerS)}) | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p99Ms)} | ${s.errors} |`,
    );
  }
  return lines.join('\n');
}

/** The ratios table (GitHub markdown). */
export function renderRatios(rows: readonly RatioRow[]): string {
  const lines = ['| ratio | measured | target | met |', '|---|---:|---:|:---:|'];
  for (const r of rows) {
    const value = r.display ?? (r.value === undefined ? 'n/a' : r.value.toFixed(2));
    const met = r.met === undefined ? (r.target ? 'n/a' : '') : r.met ? 'yes' : '**no**';
    lines.push(`| ${cell(r.label)} | ${value} | ${r.target} | ${met} |`);
  }
  return lines.join('\n');
}

/** Where and on what the figures were measured. */
export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  rabbitmq: string;
  os: string;
  date: string;
  command: string;
  quick: boolean;
  /** 1-minute load average sampled through the run: other work on the machine shows here. */
  loadAverage?: { min: number; median: number; max: number };
}

/** The whole BENCHMARKS.md. `limits` is the hand-written "what limits it" section (markdown). */
export function renderBenchmarksMd(machine: MachineInfo, reports: readonly ScenarioReport[], limits: string, chartFile: string): string {
  const notes = reports.flatMap((r) => (r.notes ?? []).map((n) => `- **${r.name}**: ${n}`));
  const ratios = computeRatios(reports);
  const warning = headroomWarning(ratios);
  return [
    '# Benchmarks',
    '',
    `Generated by \`${machine.command}\` on ${machine.date}.${machine.quick ? ' **Quick mode: short runs, one each — a smoke test of the harness, not figures to quote.**' : ''}`,
    '',
    '| machine | |',
    '|---|---|',
    `| CPU | ${machine.cpus} cores (${cell(machine.cpuModel)}) |`,
    `| memory | ${machine.memoryGiB.toFixed(1)} GiB |`,
    `| OS | ${cell(machine.os)} |`,
    `| Node.js | ${machine.node} |`,
    `| RabbitMQ | ${machine.rabbitmq} |`,
    ...(machine.loadAverage ? [`| load average (1 min) during the run | median ${machine.loadAverage.median.toFixed(1)}, ${machine.loadAverage.min.toFixed(1)}–${machine.loadAverage.max.toFixed(1)} on ${machine.cpus} cores${machine.loadAverage.max > machine.cpus * 1.5 ? ': the machine was shared with other work, so absolute figures are low and noisy; compare the ratios, taken within one run' : ''} |`] : []),
    '',
    'Everything (load generator, gateway, downstream, broker) runs on this one machine, so the',
    'processes compete for the same cores: the figures compare designs side by side, they are not',
    'capacity planning numbers. Load is 64 concurrent requests unless stated. Throughput is the',
    'median of the runs with min–max; p50/p99 are the median of the runs\' percentiles',
    '(autocannon rounds HTTP latencies to whole milliseconds).',
    '',
    '## Results',
    '',
    renderTable(reports),
    '',
    ...(notes.length ? [...notes, ''] : []),
    `![p50 and p99 latency per scenario](${chartFile})`,
    '',
    '## CPU per request, per process',
    '',
    'CPU time (user + system, from `/proc/<pid>/stat`) each process used during the measured runs,',
    'divided by the requests (or messages) completed: µs per operation, median of the runs. `front` is',
    'the enqueuer or the baseline\'s HTTP front, `worker` the dequeuer(s) or the baseline consumer,',
    '`broker` the RabbitMQ node in use (found by its AMQP port), `load generator` the bench process',
    '(autocannon, or the raw AMQP client), `downstream` the plain node:http echo.',
    '',
    renderCpuTable(reports),
    '',
    'System calls per operation, write / read, from `syscw` / `syscr` of `/proc/<pid>/io` (median of',
    'the runs): a process that batches its socket writes makes fewer. The count is exact where CPU',
    'time moves with the load of the machine, but a call is not a cost: one `writev` of many frames',
    'costs more than one of a single frame. The broker\'s counts also hold its file I/O (quorum log,',
    'stream segments) and the wake-ups between its schedulers; the Node processes\' counts are nearly',
    'all socket writes and reads.',
    '',
    renderSyscallTable(reports),
    '',
    '## Ratios and targets',
    '',
    renderRatios(ratios),
    '',
    ...(warning ? [warning, ''] : []),
    '## What limits it',
    '',
    limits.trim(),
    '',
  ].join('\n');
}

/** Escapes text for XML character data and attribute values. */
export function xmlEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&apos;');
}

/** A round axis maximum at or above `value` (1, 2, 2.5, 5 × 10^n). */
export function niceCeil(value: number): number {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= value) return m * exp;
  return 10 * exp;
}

/**
 * Horizontal bar chart of latency: per scenario one bar (`class="bar"`) from 0 to p99 with the
 * p50 drawn darker inside it, values written at the end. Scenarios without latency are left out.
 */
export function renderLatencySvg(reports: readonly ScenarioReport[], title = 'Latency per scenario (ms, 64 concurrent)'): string {
  const rows = reports.filter((r) => r.status === 'ok' && r.summary?.p99Ms !== undefined && r.summary.p50Ms !== undefined);
  const labelW = 190;
  const plotW = 460;
  const rowH = 34;
  const top = 56;
  const width = labelW + plotW + 130;
  const height = top + rows.length * rowH + 44;
  const max = niceCeil(Math.max(1, ...rows.map((r) => r.summary!.p99Ms!)));
  const x = (v: number): number => labelW + (v / max) * plotW;
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<title>${xmlEscape(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${xmlEscape(title)}</text>`,
    `<rect x="${labelW}" y="32" width="14" height="10" fill="#1f5f99"/><text x="${labelW + 20}" y="41">p50</text>`,
    `<rect x="${labelW + 70}" y="32" width="14" height="10" fill="#9cc3e6"/><text x="${labelW + 90}" y="41">p99</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (max / 5) * i;
    const gx = x(v).toFixed(1);
    out.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${top + rows.length * rowH}" stroke="#dddddd"/>`);
    out.push(`<text x="${gx}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#555555">${Number(v.toFixed(2))}</text>`);
  }
  out.push(`<text x="${labelW + plotW / 2}" y="${top + rows.length * rowH + 34}" text-anchor="middle" fill="#555555">milliseconds</text>`);
  rows.forEach((r, i) => {
    const s = r.summary!;
    const y = top + i * rowH;
    const name = r.kind === 'baseline' ? `${r.name} (baseline)` : r.name;
    out.push(`<g class="scenario" data-name="${xmlEscape(r.name)}">`);
    out.push(`<text x="${labelW - 8}" y="${y + 19}" text-anchor="end">${xmlEscape(name)}</text>`);
    out.push(`<rect class="bar" x="${labelW}" y="${y + 5}" width="${Math.max(1, x(s.p99Ms!) - labelW).toFixed(1)}" height="20" fill="#9cc3e6"><title>${xmlEscape(`${name}: p99 ${fmtMs(s.p99Ms)} ms`)}</title></rect>`);
    out.push(`<rect class="p50" x="${labelW}" y="${y + 5}" width="${Math.max(1, x(s.p50Ms!) - labelW).toFixed(1)}" height="20" fill="#1f5f99"><title>${xmlEscape(`${name}: p50 ${fmtMs(s.p50Ms)} ms`)}</title></rect>`);
    out.push(`<text x="${(x(s.p99Ms!) + 6).toFixed(1)}" y="${y + 19}" fill="#333333">${fmtMs(s.p50Ms)} / ${fmtMs(s.p99Ms)}</text>`);
    out.push('</g>');
  });
  out.push('</svg>', '');
  return out.join('\n');
}
