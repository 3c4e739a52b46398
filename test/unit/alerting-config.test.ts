import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { beforeEach, describe, expect, it } from 'vitest';
import { durationS, shortenAlertmanagerConfig, shortenAlertRules } from '../support/alerting-config.ts';

describe('test transforms of the monitoring configuration', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('parses Prometheus durations', () => {
    expect(durationS('90s')).toBe(90);
    expect(durationS('1h30m')).toBe(5400);
    expect(() => durationS('5 m')).toThrow();
  });

  it('caps for: and range selectors and changes nothing else', () => {
    const src = 'groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]) > 0 and max_over_time(y[1m]) == 2 and z[3s] > 0\n        for: 15m\n        labels: { severity: warning }\n      - alert: B\n        expr: up == 0\n';
    const out = parse(shortenAlertRules(src, { forS: 2, rangeS: 10 })) as { groups: Array<{ rules: Array<Record<string, unknown>> }> };
    expect(out.groups[0]!.rules[0]).toEqual({ alert: 'A', expr: 'rate(x[10s]) > 0 and max_over_time(y[10s]) == 2 and z[3s] > 0', for: '2s', labels: { severity: 'warning' } });
    expect(out.groups[0]!.rules[1]).toEqual({ alert: 'B', expr: 'up == 0' });
  });

  it('keeps every alert of monitoring/alerts.yml', () => {
    const src = readFileSync(new URL('../../monitoring/alerts.yml', import.meta.url), 'utf8');
    const names = (y: string) => (parse(y) as { groups: Array<{ rules: Array<{ alert?: string }> }> }).groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(names(shortenAlertRules(src, { forS: 2, rangeS: 10 }))).toEqual(names(src));
  });

  it('shortens grouping on every route and points webhooks at the local receiver', () => {
    const src = readFileSync(new URL('../../monitoring/alertmanager.yml', import.meta.url), 'utf8');
    const out = parse(shortenAlertmanagerConfig(src, 1, 'http://127.0.0.1:1234')) as {
      route: { group_wait: string; routes: Array<{ group_wait: string; group_interval: string }> };
      receivers: Array<{ webhook_configs: Array<{ url: string }> }>;
      inhibit_rules: unknown[];
    };
    expect(out.route.group_wait).toBe('1s');
    for (const r of out.route.routes) expect([r.group_wait, r.group_interval]).toEqual(['1s', '1s']);
    expect(out.receivers.flatMap((r) => r.webhook_configs.map((w) => w.url))).toEqual([
      'http://127.0.0.1:1234/alerts/default', 'http://127.0.0.1:1234/alerts/critical', 'http://127.0.0.1:1234/alerts/warning',
    ]);
    expect(out.inhibit_rules.length).toBe((parse(src) as { inhibit_rules: unknown[] }).inhibit_rules.length);
  });
});
