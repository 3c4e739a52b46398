import type { GatewayEvent, JobEvent } from '../events.ts';

/** Bounds of one batch (docs/adr/1100-events-on-a-stream.md for why these values). */
export const BATCH_DEFAULTS = Object.freeze({ maxDelayMs: 5, maxEvents: 32, maxBytes: 256 * 1024 });

export interface EventBatcherOptions {
  /**
   * Publishes one v2 batch (the caller's confirm publisher); rejects when it is not confirmed.
   * `firstAt`: epoch ms the oldest transition in it was added (the {@link FIRST_AT_HEADER}).
   */
  publish: (body: Buffer, events: number, firstAt: number) => Promise<unknown>;
  /** A batch was not published (publisher down, not confirmed): its events are lost to the stream. */
  onError: (err: unknown, events: number) => void;
  /** A batch left: its number of events, bytes and how long its oldest event waited (ms). */
  onFlush?: (events: number, bytes: number, waitedMs: number) => void;
  /** Longest an event waits for company (ms). @default 5 */
  maxDelayMs?: number;
  /**
   * Transitions that make a batch leave at once. Under load a batch fills long before the timer
   * fires late, so this bounds the wait there (docs/adr/1100, addendum of 2026-12-03). @default 32
   */
  maxEvents?: number;
  /** Bytes of events in one batch; a single larger event travels alone. @default 262144 */
  maxBytes?: number;
}

const HEAD = '{"v":2,"kind":"batch","events":[';
const TAIL = ']}';

interface PendingRunning {
  index: number;
  attempt: number;
  at: number;
  queuedAt: number | undefined;
}

/**
 * Collects the transitions a process produces and publishes them as one v2 batch message
 * (`{"v":2,"kind":"batch","events":[…]}`) when the first of them has waited `maxDelayMs`, or at once
 * when `maxEvents` or `maxBytes` is reached. Each event is encoded once, when added. A `running`
 * transition still waiting when the same attempt's next transition arrives is folded into it
 * (`startedAt`, with its `queuedAt`): the broker and every reader get one event instead of two, and
 * decoders expand it.
 */
export class EventBatcher {
  #o: Required<Omit<EventBatcherOptions, 'onFlush'>> & Pick<EventBatcherOptions, 'onFlush'>;
  #parts: Array<string | undefined> = [];
  #count = 0;
  #bytes = 0;
  #running = new Map<string, PendingRunning>();
  #timer: NodeJS.Timeout | undefined;
  #firstAt = 0;
  #inflight = new Set<Promise<unknown>>();

  constructor(o: EventBatcherOptions) {
    this.#o = { maxDelayMs: BATCH_DEFAULTS.maxDelayMs, maxEvents: BATCH_DEFAULTS.maxEvents, maxBytes: BATCH_DEFAULTS.maxBytes, ...o };
  }

  /** Events waiting for the next flush. */
  get pending(): number {
    return this.#count;
  }

  add(event: GatewayEvent): void {
    let e = event;
    if (e.kind === 'job') {
      const key = `${e.tenant}\u0000${e.jobId}`;
      const running = this.#running.get(key);
      if (running) {
        this.#running.delete(key);
        if (running.attempt === e.attempt && e.state !== 'running' && e.state !== 'queued') {
          this.#bytes -= this.#parts[running.index]!.length + 1;
          this.#parts[running.index] = undefined;
          this.#count--;
          e = { ...(e as JobEvent), startedAt: running.at };
          if (running.queuedAt !== undefined) e.queuedAt = running.queuedAt;
        }
      }
    }
    const json = JSON.stringify(e);
    if (this.#count > 0 && this.#bytes + json.length + 1 > this.#o.maxBytes) this.flush();
    if (e.kind === 'job' && e.state === 'running') this.#running.set(`${e.tenant}\u0000${e.jobId}`, { index: this.#parts.length, attempt: e.attempt, at: e.at, queuedAt: e.queuedAt });
    if (this.#count === 0) this.#firstAt = Date.now();
    this.#parts.push(json);
    this.#count++;
    this.#bytes += json.length + 1;
    if (this.#count >= this.#o.maxEvents || this.#bytes >= this.#o.maxBytes) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.#o.maxDelayMs);
  }

  /** Publishes what is waiting now. */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#count === 0) return;
    const parts = this.#parts;
    const count = this.#count;
    this.#parts = [];
    this.#count = 0;
    this.#bytes = 0;
    this.#running.clear();
    let body = HEAD;
    let first = true;
    for (const p of parts) {
      if (p === undefined) continue;
      body += first ? p : `,${p}`;
      first = false;
    }
    const buf = Buffer.from(body + TAIL);
    const firstAt = this.#firstAt;
    this.#o.onFlush?.(count, buf.length, Date.now() - firstAt);
    let sent: Promise<unknown>;
    try {
      sent = this.#o.publish(buf, count, firstAt);
    } catch (err) {
      this.#o.onError(err, count);
      return;
    }
    const tracked = sent.then(() => undefined, (err: unknown) => this.#o.onError(err, count)).finally(() => this.#inflight.delete(tracked));
    this.#inflight.add(tracked);
  }

  /** Flushes and waits until every batch published so far is confirmed or failed. */
  async close(): Promise<void> {
    this.flush();
    await Promise.all([...this.#inflight]);
  }
}
