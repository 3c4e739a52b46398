import { createServer } from 'node:http';
import { writeSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { cpuSeconds, listeningInodes, parseProcStat, pidListeningOn, syscallCounts } from '../../bench/lib/cpu.ts';
import { topSelfTime, type CpuProfile } from '../../bench/lib/cpu-profile.ts';
import { computeRatios, headroomWarning, niceCeil, renderCpuTable, renderLatencySvg, renderSyscallTable, renderTable, xmlEscape, type ScenarioReport } from '../../bench/lib/report.ts';
import { closedLoop, growthBetween, median, medianCpu, medianSyscalls, minMax, percentileOfSorted, ratio, summarize, type RunResult } from '../../bench/lib/stats.ts';

const run = (throughputPerS: number, p50Ms?: number, p99Ms?: number, errors = 0): RunResult => ({ throughputPerS, p50Ms, p99Ms, errors, count: throughputPerS * 10, durationS: 10 });
const ok = (name: string, runs: RunResult[], kind: 'baseline' | 'scenario' = 'scenario'): ScenarioReport => ({ name, title: `${name} title`, kind, status: 'ok', summary: summarize(runs) });

/**
 * A minimal XML well-formedness check: one root, tags nested and closed in order, attributes
 * quoted, no raw `<` or stray `&` in text. Enough to catch what string-built SVG gets wrong.
 */
function assertWellFormedXml(xml: string): void {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = token.exec(body)) !== null) {
    pos = token.lastIndex;
    const [, closing, name, , selfClosing, text] = m;
    if (text !== undefined) {
      expect(text.replace(/&(amp|lt|gt|quot|apos);/g, '')).not.toMatch(/[&>]/);
      if (stack.length === 0) expect(text.trim()).toBe('');
      continue;
    }
    if (closing) expect(stack.pop()).toBe(name);
    else {
      if (stack.length === 0) roots++;
      if (!selfClosing) stack.push(name!);
    }
  }
  expect(pos).toBe(body.length);
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
}

describe('bench statistics', () => {
  it('median of odd and even counts, min-max, without reordering the input', () => {
    const values = [5, 1, 3];
    expect(median(values)).toBe(3);
    expect(values).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(minMax([4, -1, 9])).toEqual({ min: -1, max: 9 });
    expect(() => median([])).toThrow();
  });

  it('nearest-rank percentiles', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentileOfSorted(sorted, 50)).toBe(50);
    expect(percentileOfSorted(sorted, 99)).toBe(99);
    expect(percentileOfSorted(sorted, 100)).toBe(100);
    expect(percentileOfSorted([], 50)).toBeUndefined();
  });

  it('summarizes runs: median and min-max throughput, median percentiles, summed errors', () => {
    const s = summarize([run(100, 2, 10, 1), run(300, 4, 30), run(200, 3, 20, 2)]);
    expect(s).toEqual({ runs: 3, throughputMedianPerS: 200, throughputMinPerS: 100, throughputMaxPerS: 300, p50Ms: 3, p99Ms: 20, errors: 3 });
    expect(summarize([run(50)]).p99Ms).toBeUndefined();
  });

  it('ratio is undefined without a positive base', () => {
    expect(ratio(80, 100)).toBe(0.8);
    expect(ratio(80, 0)).toBeUndefined();
    expect(ratio(undefined, 100)).toBeUndefined();
  });

  it('growth compares the medians around two points of the run', () => {
    const samples = Array.from({ length: 101 }, (_, i) => ({ atMs: i * 10, value: i < 50 ? 100 : 110 }));
    samples[25] = { atMs: 250, value: 1000 }; // one spike does not decide it
    expect(growthBetween(samples, 1000, 0.25, 1)).toBeCloseTo(0.1);
    expect(growthBetween([], 1000, 0.25, 1)).toBeUndefined();
  });
});

describe('bench report', () => {
  const reports: ScenarioReport[] = [
    ok('direct', [run(10_000, 3, 9)], 'baseline'),
    ok('raw-rpc', [run(4000, 10, 20), run(4200, 11, 22), run(3800, 12, 24)], 'baseline'),
    ok('raw-publish', [run(9000, 4, 12)], 'baseline'),
    ok('sync', [run(3300, 15, 30), run(3400, 16, 32), run(3200, 17, 34)]),
    { name: 'accept-stopped', title: 'accept', kind: 'scenario', status: 'not-available', reason: 'enqueuer answered 200 | not 202' },
  ];

  it('computes the issue 7 ratios from the medians and marks what is met', () => {
    const rows = computeRatios(reports);
    const byLabel = new Map(rows.map((r) => [r.label, r]));
    expect(byLabel.get('sync throughput vs raw RPC')!.value).toBeCloseTo(3300 / 4000);
    expect(byLabel.get('sync throughput vs raw RPC')!.met).toBe(true);
    expect(byLabel.get('sync p99 vs raw RPC p99')!.value).toBeCloseTo(32 / 22);
    expect(byLabel.get('sync p99 vs raw RPC p99')!.met).toBe(true);
    expect(byLabel.get('async accept (dequeuer stopped) vs raw publish')!).toMatchObject({ value: undefined, met: undefined });
    expect(byLabel.get('sync errors')!.met).toBe(true);
    expect(byLabel.get('sync throughput vs direct HTTP')!.value).toBeCloseTo(0.33);
  });

  it('fails a target that is missed', () => {
    const slow = [...reports.filter((r) => r.name !== 'sync'), ok('sync', [run(2000, 30, 60, 4)])];
    const byLabel = new Map(computeRatios(slow).map((r) => [r.label, r]));
    expect(byLabel.get('sync throughput vs raw RPC')!.met).toBe(false);
    expect(byLabel.get('sync p99 vs raw RPC p99')!.met).toBe(false);
    expect(byLabel.get('sync errors')!.met).toBe(false);
  });

  it('renders a markdown table with one row per scenario and escaped cells', () => {
    const table = renderTable(reports);
    const lines = table.split('\n');
    expect(lines).toHaveLength(2 + reports.length);
    expect(lines[0]).toMatch(/^\| scenario \| what \| runs \| throughput/);
    expect(lines.find((l) => l.startsWith('| sync |'))).toBe('| sync | sync title | 3 | 3,300 (3,200–3,400) | 16 | 32 | 0 |');
    expect(lines.find((l) => l.startsWith('| raw-rpc'))).toContain('| 4,000 (3,800–4,200) | 11 | 22 | 0 |');
    expect(table).toContain('not available: enqueuer answered 200 \\| not 202');
    for (const line of lines) expect(line.split(/(?<!\\)\|/).length).toBe(9);
  });

  it('renders the latency chart as well-formed SVG with one bar per scenario that has latencies', () => {
    const svg = renderLatencySvg([...reports, ok('drain <&>', [run(3000)])]);
    assertWellFormedXml(svg);
    expect(svg).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(svg.match(/class="bar"/g)).toHaveLength(4);
    expect(svg.match(/class="p50"/g)).toHaveLength(4);
    expect(svg).not.toContain('drain <&>');
  });

  it('escapes scenario names inside the SVG', () => {
    const svg = renderLatencySvg([ok('a<b & "c"', [run(1, 1, 2)])]);
    assertWellFormedXml(svg);
    expect(svg).toContain(xmlEscape('a<b & "c"'));
  });

  it('rounds the axis up to 1, 2, 2.5 or 5 times a power of ten', () => {
    expect(niceCeil(33)).toBe(50);
    expect(niceCeil(165)).toBe(200);
    expect(niceCeil(2.2)).toBe(2.5);
    expect(niceCeil(0)).toBe(1);
  });
});

describe('cpu profile summary', () => {
  it('adds up self time per function from samples and time deltas', () => {
    const profile: CpuProfile = {
      startTime: 0,
      endTime: 4000,
      nodes: [
        { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 } },
        { id: 2, callFrame: { functionName: 'encodeTable', url: 'file:///x/node_modules/amqplib/lib/codec.js', lineNumber: 70 } },
        { id: 3, callFrame: { functionName: 'encodeTable', url: 'file:///x/node_modules/amqplib/lib/codec.js', lineNumber: 70 } },
        { id: 4, callFrame: { functionName: 'handler', url: 'file:///repo/enqueuer/routes/services.ts', lineNumber: 37 } },
      ],
      samples: [2, 3, 4, 2],
      timeDeltas: [1000, 1000, 1000, 1000],
    };
    const top = topSelfTime(profile);
    expect(top[0]).toMatchObject({ fn: 'encodeTable', where: 'node_modules/amqplib/lib/codec.js:71', selfMs: 3, percent: 75 });
    expect(top[1]).toMatchObject({ fn: 'handler', where: 'enqueuer/routes/services.ts:38', selfMs: 1 });
  });
});

describe('closed-loop load', () => {
  it('keeps `inflight` operations going until the time is up, counting latencies and failures apart', async () => {
    let running = 0;
    let peak = 0;
    let n = 0;
    const r = await closedLoop(4, 0.2, async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((res) => setTimeout(res, 5));
      running--;
      return ++n % 5 === 0 ? undefined : 5;
    });
    expect(peak).toBe(4);
    expect(r.count + r.errors).toBe(n);
    expect(r.errors).toBe(Math.floor(n / 5));
    expect(r.p50Ms).toBe(5);
    expect(r.durationS).toBeGreaterThanOrEqual(0.2);
    expect(r.throughputPerS).toBeCloseTo(r.count / r.durationS, 6);
  });
});

describe('bench CPU per process', () => {
  it('reads utime and stime from /proc/<pid>/stat, also when the command name holds spaces and parentheses', () => {
    const line = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 517 83 0 0 20 0 11 0 1000 123456 789 18446744073709551615';
    expect(parseProcStat(line)).toEqual({ utimeTicks: 517, stimeTicks: 83 });
    expect(() => parseProcStat('garbage')).toThrow();
    expect(() => parseProcStat('1 (x) S 1')).toThrow();
  });

  it('reads this process from /proc and sees its CPU time grow', () => {
    const before = cpuSeconds(process.pid)!;
    const until = Date.now() + 60;
    while (Date.now() < until) Math.sqrt(Math.random());
    expect(cpuSeconds(process.pid)!).toBeGreaterThan(before);
    expect(cpuSeconds(2 ** 30)).toBeUndefined();
  });

  it('finds the inodes of sockets listening on a port in /proc/net/tcp', () => {
    const text = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 31337 1 0000000000000000 100 0 0 10 0',
      '   1: 0100007F:1628 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   999        0 31338 1 0000000000000000 20 4 30 10 -1',
      '   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0',
    ].join('\n');
    expect(listeningInodes(text, 5672)).toEqual(['31337']);
    expect(listeningInodes(text, 8080)).toEqual(['4242']);
    expect(listeningInodes(text, 1)).toEqual([]);
  });

  it('finds the pid listening on a port (a server of this process)', async () => {
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    try {
      expect(pidListeningOn((srv.address() as AddressInfo).port)).toBe(process.pid);
    } finally {
      srv.close();
    }
  });

  it('takes the median CPU per role over runs and tables it with a total', () => {
    const runs: RunResult[] = [
      { ...run(100), cpu: { front: 100, worker: 80, broker: 120 } },
      { ...run(100), cpu: { front: 120, worker: 90, broker: 100 } },
      { ...run(100), cpu: { front: 110, worker: 70 } },
    ];
    expect(medianCpu(runs)).toEqual({ front: 110, worker: 80 });
    const table = renderCpuTable([{ name: 'sync', title: 't', kind: 'scenario', status: 'ok', summary: summarize(runs) }, ok('none', [run(1)])]);
    expect(table.split('\n')).toEqual([
      '| scenario | front | worker | broker | load generator | downstream | total |',
      '|---|---:|---:|---:|---:|---:|---:|',
      '| sync | 110 | 80 | — | — | — | 190 |',
    ]);
  });

  it('takes the median system calls per role over runs and tables them as write / read', () => {
    const runs: RunResult[] = [
      { ...run(100), syscalls: { front: { writes: 1.1, reads: 1.2 }, worker: { writes: 3, reads: 1 } } },
      { ...run(100), syscalls: { front: { writes: 1.3, reads: 1.0 }, worker: { writes: 2, reads: 2 } } },
      { ...run(100), syscalls: { front: { writes: 1.2, reads: 1.1 } } },
    ];
    expect(medianSyscalls(runs)).toEqual({ front: { writes: 1.2, reads: 1.1 } });
    const table = renderSyscallTable([{ name: 'sync', title: 't', kind: 'scenario', status: 'ok', summary: summarize(runs) }, ok('none', [run(1)])]);
    expect(table.split('\n')).toEqual([
      '| scenario | front | worker | broker | load generator | downstream |',
      '|---|---:|---:|---:|---:|---:|',
      '| sync | 1.20 / 1.10 | — | — | — | — |',
    ]);
  });

  it('counts this process\'s own read and write system calls', () => {
    const a = syscallCounts(process.pid);
    writeSync(1, '');
    const b = syscallCounts(process.pid);
    expect(a).toBeDefined();
    expect(b!.writes).toBeGreaterThan(a!.writes);
    expect(syscallCounts(2 ** 22 + 7)).toBeUndefined();
  });

  it('states that the downstream is the bottleneck when direct HTTP is under 8x sync', () => {
    const base = [ok('express-pipeline', [run(4000, 10, 40)], 'baseline')];
    const flat = computeRatios([...base, ok('direct', [run(20_000, 1, 3)], 'baseline'), ok('sync', [run(4000, 10, 44)])]);
    expect(flat.find((r) => r.label === 'sync throughput vs minimal Express pipeline')).toMatchObject({ value: 1, met: true });
    expect(flat.find((r) => r.label === 'sync p99 vs minimal Express pipeline p99')!.value).toBeCloseTo(1.1);
    expect(headroomWarning(flat)).toMatch(/downstream is the bottleneck.*5\.0x/);
    const roomy = computeRatios([...base, ok('direct', [run(40_000, 1, 3)], 'baseline'), ok('sync', [run(4000, 10, 60)])]);
    expect(headroomWarning(roomy)).toBeUndefined();
    expect(roomy.find((r) => r.label === 'sync p99 vs minimal Express pipeline p99')!.met).toBe(false);
  });
});
