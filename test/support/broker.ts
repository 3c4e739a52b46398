import { randomBytes } from 'node:crypto';
import { connect, type Channel } from 'amqplib';
import { inject } from 'vitest';

/** The AMQP URL of the broker the global setup found or started. */
export function brokerUrl(): string {
  const url = inject('rabbitmqUrl');
  if (!url) {
    throw new Error('No test broker was provided: run the integration project ' +
      '(npx vitest run --project integration) or set RABBITMQ_URL.');
  }
  return url;
}

/** The management API base URL (with credentials), or undefined when the broker has none. */
export function managementUrl(): string | undefined {
  return inject('rabbitmqManagementUrl') || undefined;
}

/**
 * A topology prefix made from a test title plus a random suffix, only `[a-z0-9-]`,
 * so the management UI shows which test made a queue: `uniquePrefix('sync echo')` → `t-sync-echo-3f9a`.
 */
export function uniquePrefix(title: string): string {
  const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 32).replace(/-+$/, '');
  return `t-${slug ? `${slug}-` : ''}${randomBytes(2).toString('hex')}`;
}

/**
 * Deletes the named queues and exchanges, all of which must start with `prefix` (a guard against
 * deleting shared topology). AMQP cannot list queues, so tests pass what they declared.
 * Names that do not exist are ignored.
 */
export async function deleteByPrefix(
  url: string,
  prefix: string,
  names: { queues?: readonly string[]; exchanges?: readonly string[] },
): Promise<void> {
  const all = [...(names.queues ?? []), ...(names.exchanges ?? [])];
  const foreign = all.filter((name) => !prefix || !name.startsWith(prefix));
  if (foreign.length > 0) throw new Error(`refusing to delete names outside prefix '${prefix}': ${foreign.join(', ')}`);
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    // A channel error (e.g. a 406 on a queue in use elsewhere) closes the channel, so each
    // deletion gets a fresh one once that happens.
    let channel: Channel | undefined;
    const run = async (op: (ch: Channel) => Promise<unknown>): Promise<void> => {
      if (!channel) {
        channel = await conn.createChannel();
        channel.on('error', () => undefined);
      }
      try {
        await op(channel);
      } catch {
        channel = undefined;
      }
    };
    for (const queue of names.queues ?? []) await run((ch) => ch.deleteQueue(queue));
    for (const exchange of names.exchanges ?? []) await run((ch) => ch.deleteExchange(exchange));
  } finally {
    await conn.close().catch(() => undefined);
  }
}
