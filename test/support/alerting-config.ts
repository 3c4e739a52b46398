import { parse, stringify } from 'yaml';

/**
 * Test transforms of the monitoring configuration, so the end-to-end alerting test runs the real
 * rule file and route tree on a time scale of seconds. Only durations change; expressions, labels,
 * thresholds, routes and inhibitions stay as written.
 */

const UNIT_S: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

/** A Prometheus duration (`90s`, `5m`, `1h30m`) in seconds. */
export function durationS(d: string): number {
  const parts = [...d.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== d) throw new Error(`not a Prometheus duration: ${d}`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_S[p[2]!]!, 0);
}

export interface ShortenOptions {
  /** Upper bound of every `for:`. */
  forS: number;
  /** Upper bound of every range selector `[d]` in expressions. */
  rangeS: number;
}

/**
 * alerts.yml with every `for:` capped at `forS` and every range selector `[d]` capped at `rangeS`
 * (e.g. `rate(x[5m])` → `rate(x[10s])`): with 1 s scrapes a 10 s window still holds ~10 samples.
 */
export function shortenAlertRules(alertsYaml: string, o: ShortenOptions): string {
  const doc = parse(alertsYaml) as { groups: Array<{ rules: Array<{ expr: string; for?: string }> }> };
  for (const group of doc.groups) {
    for (const rule of group.rules) {
      if (rule.for !== undefined) rule.for = `${Math.min(durationS(rule.for), o.forS)}s`;
      rule.expr = rule.expr.replace(/\[(\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*)\]/g, (_m, d: string) => `[${Math.min(durationS(d), o.rangeS)}s]`);
    }
  }
  return stringify(doc);
}

interface Route {
  group_wait?: string;
  group_interval?: string;
  repeat_interval?: string;
  routes?: Route[];
}

/**
 * alertmanager.yml with group_wait/group_interval of every route set to `groupS` and every webhook
 * pointed at `webhookBase` + its original path (`/alerts/critical` …).
 */
export function shortenAlertmanagerConfig(amYaml: string, groupS: number, webhookBase: string): string {
  const doc = parse(amYaml) as { global?: Record<string, unknown>; route: Route; receivers: Array<{ webhook_configs?: Array<{ url: string }> }> };
  const walk = (r: Route): void => {
    r.group_wait = `${groupS}s`;
    r.group_interval = `${groupS}s`;
    for (const child of r.routes ?? []) walk(child);
  };
  walk(doc.route);
  for (const receiver of doc.receivers) {
    for (const w of receiver.webhook_configs ?? []) w.url = webhookBase + new URL(w.url).pathname;
  }
  return stringify(doc);
}
