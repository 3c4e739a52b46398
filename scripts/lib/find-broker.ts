import { existsSync } from 'node:fs';
import { connect } from 'amqplib';
import { RABBITMQ_SERVER_BIN, startPrivateNode, type PrivateNode } from './rabbit-node.ts';

/** The broker a process should use, and where it came from. */
export interface FoundBroker {
  /** AMQP URL with credentials. */
  url: string;
  /** Management API base URL with credentials, when known. */
  managementUrl?: string;
  /** `env` = RABBITMQ_URL, `default` = a broker answering on 127.0.0.1:5672, `private` = started here. */
  source: 'env' | 'default' | 'private';
  /** The started node when `source` is `private`; the caller destroys it. */
  node?: PrivateNode;
}

/** The broker tried when RABBITMQ_URL is not set. */
export const DEFAULT_BROKER_URL = 'amqp://guest:guest@127.0.0.1:5672';

/**
 * Finds a broker: RABBITMQ_URL if set (trusted, not probed); else the default local broker if it
 * completes an AMQP handshake within `probeTimeoutMs`; else a private node with the management and
 * Prometheus plugins, when RabbitMQ is installed here.
 */
export async function findBroker(
  env: NodeJS.ProcessEnv,
  opts: { probeTimeoutMs?: number; defaultUrl?: string; log?: (msg: string) => void } = {},
): Promise<FoundBroker> {
  const log = opts.log ?? (() => undefined);
  const managementUrl = managementUrlFor(env);
  if (env.RABBITMQ_URL) {
    return { url: env.RABBITMQ_URL, source: 'env', ...(managementUrl ? { managementUrl } : {}) };
  }
  const defaultUrl = opts.defaultUrl ?? DEFAULT_BROKER_URL;
  const probe = await probeAmqp(defaultUrl, opts.probeTimeoutMs ?? 2_000);
  if (probe.ok) {
    return { url: defaultUrl, source: 'default', ...(managementUrl ? { managementUrl } : {}) };
  }
  log(`no broker at ${redactUrl(defaultUrl)} (${probe.reason})`);
  if (!existsSync(RABBITMQ_SERVER_BIN)) {
    throw new Error(`No RabbitMQ broker found: RABBITMQ_URL is not set, ${redactUrl(defaultUrl)} ` +
      `did not answer (${probe.reason}) and ${RABBITMQ_SERVER_BIN} is not installed. Set RABBITMQ_URL.`);
  }
  log('starting a private RabbitMQ node');
  const node = await startPrivateNode({ plugins: ['rabbitmq_management', 'rabbitmq_prometheus'] });
  log(`private RabbitMQ node ${node.nodeName} up at ${redactUrl(node.url)} (dir ${node.dir})`);
  return { url: node.url, source: 'private', node, ...(node.managementUrl ? { managementUrl: node.managementUrl } : {}) };
}

/** The management API base URL from RABBITMQ_MANAGEMENT_URL, or undefined when unset or empty. */
export function managementUrlFor(env: NodeJS.ProcessEnv): string | undefined {
  return env.RABBITMQ_MANAGEMENT_URL || undefined;
}

/**
 * Opens and closes one AMQP connection (TCP connect and handshake) within `timeoutMs`.
 * Never rejects: a failure is returned with its reason.
 */
export async function probeAmqp(url: string, timeoutMs: number): Promise<{ ok: true } | { ok: false; reason: string }> {
  const attempt = connect(url, { timeout: timeoutMs });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    const result = await Promise.race([attempt, timeout]);
    if (result === 'timeout') {
      // A handshake that completes after we gave up must not leak a connection.
      attempt.then((conn) => conn.close(), () => undefined).catch(() => undefined);
      return { ok: false, reason: `no AMQP handshake within ${timeoutMs} ms` };
    }
    result.on('error', () => undefined);
    await result.close().catch(() => undefined);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** The URL with its password replaced by `***`, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return '<unparsable url>';
  }
}
