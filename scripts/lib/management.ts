import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** The plugins the gateway's operators rely on: the management UI/API and the Prometheus endpoint. */
export const OPERATOR_PLUGINS = ['rabbitmq_management', 'rabbitmq_prometheus'] as const;
/** Debian's wrapper (runs as the rabbitmq user against the machine's node). */
export const RABBITMQ_PLUGINS_BIN = '/usr/sbin/rabbitmq-plugins';
/** What an operator types on a machine whose broker lacks the plugins. */
export const ENABLE_PLUGINS_COMMAND = `sudo rabbitmq-plugins enable ${OPERATOR_PLUGINS.join(' ')}`;

/** The management API of the broker at `amqpUrl` when it runs on this machine with the default port. */
export function localManagementUrl(amqpUrl: string): string | undefined {
  try {
    const u = new URL(amqpUrl.split(',')[0]!.trim());
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) || (u.port || '5672') !== '5672') return undefined;
    return `http://${u.username || 'guest'}:${u.password || 'guest'}@127.0.0.1:15672`;
  } catch {
    return undefined;
  }
}

/** A management API request with the URL's credentials as basic auth; the parsed JSON body. */
export async function managementGet<T>(managementUrl: string, path: string, timeoutMs = 5_000): Promise<T> {
  const base = new URL(managementUrl);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  const url = `${base.protocol}//${base.host}${base.pathname.replace(/\/$/, '')}${path}`;
  const res = await fetch(url, { headers: { authorization: auth }, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  return (await res.json()) as T;
}

/** Whether the management API answers (an authenticated GET /api/overview succeeds). */
export async function managementAnswers(managementUrl: string, timeoutMs = 2_000): Promise<{ ok: true; version: string } | { ok: false; reason: string }> {
  try {
    const o = await managementGet<{ rabbitmq_version?: string; management_version?: string }>(managementUrl, '/api/overview', timeoutMs);
    return { ok: true, version: o.rabbitmq_version ?? o.management_version ?? 'unknown' };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

/**
 * Enables the management and Prometheus plugins on the machine's own broker with `rabbitmq-plugins`
 * (online: the running node loads them, no restart) and waits until the management API answers.
 * Needs the rights to run rabbitmq-plugins (root or the rabbitmq user).
 */
export async function enableLocalPlugins(managementUrl: string, opts: { timeoutMs?: number; bin?: string } = {}): Promise<void> {
  const bin = opts.bin ?? RABBITMQ_PLUGINS_BIN;
  if (!existsSync(bin)) throw new Error(`${bin} not found: install rabbitmq-server, or enable the plugins on the broker (${ENABLE_PLUGINS_COMMAND})`);
  const timeoutMs = opts.timeoutMs ?? 90_000;
  await new Promise<void>((resolve, reject) => {
    execFile(bin, ['enable', ...OPERATOR_PLUGINS], { timeout: timeoutMs }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${bin} enable ${OPERATOR_PLUGINS.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve();
    });
  });
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await managementAnswers(managementUrl);
    if (r.ok) return;
    if (Date.now() > until) throw new Error(`management API at ${redact(managementUrl)} still not answering after enabling the plugins: ${r.reason}`);
    await sleep(500);
  }
}

/** The URL without its credentials, for printing. */
export function redact(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString().replace(/\/$/, '');
}
