import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { StreamReader, type StreamReaderOptions } from '../../shared/amqp/stream-reader.ts';

/** What an operator did: replayed or discarded dead letters, cancelled a job. */
export type AuditAction = 'replay' | 'discard' | 'cancel';

/** One entry of the audit trail (who, what, when, why), scoped to its tenant. */
export interface AuditEntry {
  v: 1;
  id: string;
  /** Epoch ms. */
  at: number;
  tenant: string;
  keyId: string;
  requestId: string;
  action: AuditAction;
  service: string;
  /** Replays redirected to another service: where they went. */
  target?: string;
  /** Job ids acted on (at most {@link MAX_AUDIT_IDS}; `count` is the full number). */
  ids: string[];
  count: number;
  /** Discards: the operator's reason (required); replays and cancels: an optional note. */
  reason?: string;
  /** The DLQ group the operation selected, when it selected by group. */
  group?: string;
  ratePerS?: number;
  resetAttempts?: boolean;
  /** Ids asked for that were not found. */
  notFound?: number;
}

export const MAX_AUDIT_IDS = 1000;

export interface AuditListQuery {
  /** Only entries of these services (the key's allow-list); undefined = every service. */
  services?: ReadonlySet<string> | undefined;
  service?: string | undefined;
  limit: number;
  /** Continue after this many entries (newest first). */
  offset: number;
}

export interface AuditTrailOptions extends Omit<StreamReaderOptions, 'onMessage' | 'start'> {
  /** Publishes an encoded entry to the audit stream; resolves once the broker confirmed it. */
  publish: (content: Buffer, messageId: string) => Promise<void>;
  /** Entries kept readable per tenant in this process (the stream keeps more, by its retention). @default 5000 */
  maxPerTenant?: number;
  logger: Logger;
}

/**
 * The audit trail of operator actions, durable in a RabbitMQ stream (`<prefix>.audit`, 90 days or
 * 256 MiB, whichever comes first): every enqueuer replica publishes its entries there (confirmed)
 * and reads the stream from its start (on a connection `open` gives it, started and closed by its
 * owner), so each replica lists every replica's entries, after a restart too. Reads are served from memory, newest first, per tenant.
 */
export class AuditTrail {
  readonly reader: StreamReader;
  #o: AuditTrailOptions;
  #byTenant = new Map<string, AuditEntry[]>();
  #seen = new Set<string>();

  constructor(o: AuditTrailOptions) {
    this.#o = o;
    this.reader = new StreamReader({
      open: o.open,
      logger: o.logger,
      stream: o.stream,
      start: () => 'first',
      onMessage: (msg) => {
        const e = decodeAudit(msg.content);
        if (e) this.#add(e);
        else o.logger.warn('ignored an audit stream message that is not a v1 entry');
      },
    });
  }

  /**
   * Records an entry: confirmed on the stream before it resolves (a 503 problem when the broker
   * refuses), and listed here at once (the stream's copy is recognised by its id).
   */
  async record(fields: Omit<AuditEntry, 'v' | 'id' | 'at' | 'count'> & { count?: number }): Promise<AuditEntry> {
    const entry: AuditEntry = { v: 1, id: randomUUID(), at: Date.now(), ...fields, count: fields.count ?? fields.ids.length, ids: fields.ids.slice(0, MAX_AUDIT_IDS) };
    await this.#o.publish(Buffer.from(JSON.stringify(entry)), entry.id);
    this.#add(entry);
    return entry;
  }

  /** The tenant's entries, newest first (filters apply before paging; at most `maxPerTenant` to scan). */
  list(tenant: string, q: AuditListQuery): { items: AuditEntry[]; nextOffset: number | undefined } {
    const matching = (this.#byTenant.get(tenant) ?? []).filter((e) => (q.service === undefined || e.service === q.service || e.target === q.service) && (q.services === undefined || q.services.has(e.service))).reverse();
    const items = matching.slice(q.offset, q.offset + q.limit);
    const next = q.offset + items.length;
    return { items, nextOffset: next < matching.length ? next : undefined };
  }

  #add(e: AuditEntry): void {
    if (this.#seen.has(e.id)) return;
    this.#seen.add(e.id);
    let list = this.#byTenant.get(e.tenant);
    if (!list) this.#byTenant.set(e.tenant, (list = []));
    list.push(e);
    const max = this.#o.maxPerTenant ?? 5000;
    if (list.length > max) for (const old of list.splice(0, list.length - max)) this.#seen.delete(old.id);
  }
}

function decodeAudit(content: Buffer): AuditEntry | undefined {
  try {
    const o = JSON.parse(content.toString('utf8')) as Partial<AuditEntry>;
    if (o?.v !== 1 || typeof o.id !== 'string' || typeof o.tenant !== 'string' || typeof o.at !== 'number' || !Array.isArray(o.ids)) return undefined;
    return o as AuditEntry;
  } catch {
    return undefined;
  }
}
