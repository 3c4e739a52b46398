import { oldestKey } from '../oldest-key.ts';

/**
 * A job cancellation as recorded on the cancellation stream (docs/adr/1600-dashboard-dlq-workbench-cancel.md):
 * the enqueuer publishes it (confirmed) before answering the cancel; every dequeuer replica reads
 * the stream from its start and skips a cancelled job instead of calling its downstream.
 */
export interface Cancellation {
  v: 1;
  jobId: string;
  tenant: string;
  service: string;
  /** Epoch ms of the cancel. */
  at: number;
  keyId: string;
}

export function encodeCancellation(c: Cancellation): Buffer {
  return Buffer.from(JSON.stringify(c));
}

export function decodeCancellation(content: Buffer): Cancellation | undefined {
  try {
    const o = JSON.parse(content.toString('utf8')) as Partial<Cancellation>;
    if (o?.v !== 1 || typeof o.jobId !== 'string' || typeof o.tenant !== 'string' || typeof o.service !== 'string' || typeof o.at !== 'number') return undefined;
    return o as Cancellation;
  } catch {
    return undefined;
  }
}

/**
 * The cancelled jobs one dequeuer knows, bounded: past `maxEntries` the oldest cancellations are
 * forgotten first (the stream still holds them; a restart reads them again).
 */
export class CancellationSet {
  #ids = new Map<string, number>();
  #max: number;

  constructor(maxEntries = 200_000) {
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#ids.size;
  }

  add(c: Pick<Cancellation, 'tenant' | 'jobId' | 'at'>): void {
    const key = `${c.tenant}\u0000${c.jobId}`;
    this.#ids.delete(key);
    this.#ids.set(key, c.at);
    if (this.#ids.size > this.#max) this.#ids.delete(oldestKey(this.#ids)!);
  }

  has(tenant: string, jobId: string): boolean {
    return this.#ids.has(`${tenant}\u0000${jobId}`);
  }
}
