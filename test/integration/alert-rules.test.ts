import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';

/**
 * The monitoring configuration is checked with the real tools: promtool (Prometheus) for the
 * Prometheus config, the alert rules and their unit tests, amtool (Alertmanager) for the routing.
 * A missing tool fails the test with instructions; it never skips — unchecked rules prove nothing.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const TOOLS = {
  promtool: {
    env: 'PROMTOOL',
    install: 'Install the Debian/Ubuntu package `prometheus` (apt-get install prometheus), which ships ' +
      'promtool, or put promtool from a Prometheus release tarball on PATH (or set PROMTOOL to its path).',
  },
  amtool: {
    env: 'AMTOOL',
    install: 'Install the Debian/Ubuntu package `prometheus-alertmanager` (apt-get install prometheus-alertmanager), ' +
      'which ships amtool, or put amtool from an Alertmanager release tarball on PATH (or set AMTOOL to its path).',
  },
} as const;

/** Runs promtool/amtool in the repository root; `output` is stdout + stderr. */
function run(tool: keyof typeof TOOLS, args: string[]): { status: number | null; stdout: string; output: string } {
  const bin = process.env[TOOLS[tool].env] ?? tool;
  const r = spawnSync(bin, args, { cwd: root, encoding: 'utf8', timeout: 60_000 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error(`${tool} is not installed (looked for "${bin}"). ${TOOLS[tool].install}`);
  }
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, output: `${r.stdout}${r.stderr}` };
}

function expectSuccess(result: { status: number | null; output: string }): void {
  expect(result.status, result.output).toBe(0);
  expect(result.output).toMatch(/SUCCESS/);
}

interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleTest {
  name: string;
  alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }>;
}

const readYaml = <T>(path: string): T => parse(readFileSync(join(root, path), 'utf8')) as T;
const alerts = readYaml<{ groups: Array<{ rules: AlertRule[] }> }>('monitoring/alerts.yml')
  .groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
const ruleTests = readYaml<{ tests: RuleTest[] }>('monitoring/alerts.test.yml').tests;

/** GitHub-style heading anchors of monitoring/runbooks.md. */
const runbookAnchors = [...readFileSync(join(root, 'monitoring/runbooks.md'), 'utf8').matchAll(/^##\s+(.+?)\s*$/gm)]
  .map((m) => m[1]!.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-'));

const scratch = mkdtempSync(join(tmpdir(), 'gw-alert-rules-'));
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe('Prometheus configuration and alert rules (promtool)', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('promtool accepts monitoring/prometheus.yml and finds the rule file it names', () => {
    const r = run('promtool', ['check', 'config', 'monitoring/prometheus.yml']);
    expectSuccess(r);
    expect(r.output).toMatch(/1 rule files found/);
  });

  it('promtool accepts monitoring/alerts.yml', () => {
    const r = run('promtool', ['check', 'rules', 'monitoring/alerts.yml']);
    expectSuccess(r);
    expect(r.output).toContain(`${alerts.length} rules found`);
  });

  it('passes every case in monitoring/alerts.test.yml (promtool test rules)', () => {
    const r = run('promtool', ['test', 'rules', 'monitoring/alerts.test.yml']);
    expectSuccess(r);
    expect(r.output).not.toMatch(/FAILED/);
  });

  it('tests every alert with at least one firing and one non-firing case', () => {
    for (const { alert } of alerts) {
      const cases = ruleTests.flatMap((t) => t.alert_rule_test ?? []).filter((c) => c.alertname === alert);
      expect(cases.some((c) => (c.exp_alerts ?? []).length > 0), `${alert}: no firing case`).toBe(true);
      expect(cases.some((c) => (c.exp_alerts ?? []).length === 0), `${alert}: no non-firing case`).toBe(true);
    }
    const tested = new Set(ruleTests.flatMap((t) => t.alert_rule_test ?? []).map((c) => c.alertname));
    expect([...tested].filter((a) => !alerts.some((r) => r.alert === a)), 'tests of alerts that do not exist').toEqual([]);
  });

  it('gives every alert a severity, a summary, a description and a runbook section that exists', () => {
    expect(alerts.length).toBeGreaterThanOrEqual(15);
    expect(new Set(alerts.map((a) => a.alert)).size).toBe(alerts.length);
    for (const a of alerts) {
      expect(['critical', 'warning'], `${a.alert} severity`).toContain(a.labels?.severity);
      expect(a.annotations?.summary, `${a.alert} summary`).toBeTruthy();
      expect(a.annotations?.description, `${a.alert} description`).toBeTruthy();
      expect(a.annotations?.runbook, `${a.alert}: runbook_url is the conventional name`).toBeUndefined();
      expect(a.annotations?.runbook_url, `${a.alert} runbook_url`).toBe(`monitoring/runbooks.md#${a.alert!.toLowerCase()}`);
      expect(runbookAnchors, `${a.alert}: no section in monitoring/runbooks.md`).toContain(a.alert!.toLowerCase());
    }
    expect(runbookAnchors.filter((h) => !alerts.some((a) => a.alert!.toLowerCase() === h)), 'runbook sections without an alert').toEqual([]);
  });

  it('uses only valid PromQL in the Grafana dashboard', () => {
    const dashboard = JSON.parse(readFileSync(join(root, 'monitoring/grafana/dashboards/gateway.json'), 'utf8')) as {
      panels: Array<{ targets?: Array<{ expr: string }> }>;
    };
    // Grafana's variables replaced by what they expand to, each query checked as a recording rule.
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) =>
      t.expr.replaceAll('$__rate_interval', '5m').replaceAll('$service', '.*'));
    expect(exprs.length).toBeGreaterThan(20);
    const file = join(scratch, 'dashboard-queries.yml');
    writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules: exprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr })) }] }));
    expectSuccess(run('promtool', ['check', 'rules', file]));
  });
});

describe('Alertmanager configuration (amtool)', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('amtool accepts monitoring/alertmanager.yml', () => {
    expectSuccess(run('amtool', ['check-config', 'monitoring/alertmanager.yml']));
  });

  it.each([
    ['severity=critical', 'critical'],
    ['severity=warning', 'warning'],
    ['severity=info', 'default'],
  ])('routes an alert with %s to the %s receiver', (label, receiver) => {
    const r = run('amtool', ['config', 'routes', 'test', '--config.file=monitoring/alertmanager.yml', `--verify.receivers=${receiver}`, 'alertname=GatewayTest', label]);
    expect(r.status, r.output).toBe(0);
    expect(r.stdout.trim()).toBe(receiver);
  });
});
