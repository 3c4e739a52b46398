import type { JobEvent } from '../../shared/events.ts';

/**
 * Position of one job transition in the events stream: the offset of the stream message that
 * carried it and its index among that message's (expanded) events. Replicas read the same stream,
 * so an id means the same transition on every replica.
 */
export interface EventId {
  offset: number;
  index: number;
}

/** The SSE `id:` of a transition: `<offset>-<index>`. */
export function formatEventId(id: EventId): string {
  return `${id.offset}-${id.index}`;
}

/** Parses a `Last-Event-ID`; undefined when it is not one of ours. */
export function parseEventId(value: unknown): EventId | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,15})-(\d{1,6})$/.exec(value.trim());
  return m ? { offset: Number(m[1]), index: Number(m[2]) } : undefined;
}

export function compareEventIds(a: EventId, b: EventId): number {
  return a.offset - b.offset || a.index - b.index;
}

export interface LoggedEvent {
  id: EventId;
  event: JobEvent;
}

interface Entry {
  offset: number;
  events: LoggedEvent[];
  bytes: number;
}

/** What a replay after an id yields: the events, or `reset` when the id is older than the log. */
export type Replay = { reset: false; events: LoggedEvent[] } | { reset: true };

/**
 * The job transitions of the last stream messages this replica read (bounded by bytes), for SSE
 * clients that reconnect with `Last-Event-ID`. Contiguous from its first offset: an id at or after
 * it is served exactly; an older one (retention, or read before this process started) is a reset.
 */
export class ReplayLog {
  readonly maxBytes: number;
  #entries: Entry[] = [];
  #head = 0;
  #bytes = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Offset of the oldest message held (undefined when empty). */
  get firstOffset(): number | undefined {
    return this.#entries[this.#head]?.offset;
  }

  /** Appends a stream message's events (empty for markers and breaker-only messages: keeps the log contiguous). */
  push(offset: number, events: LoggedEvent[], bytes: number): void {
    const cost = bytes + 64;
    this.#entries.push({ offset, events, bytes: cost });
    this.#bytes += cost;
    while (this.#bytes > this.maxBytes && this.#entries.length - this.#head > 1) {
      this.#bytes -= this.#entries[this.#head]!.bytes;
      this.#entries[this.#head++] = undefined as unknown as Entry;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Forgets everything (the reader met a gap: the log must stay contiguous). */
  clear(): void {
    this.#entries = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  /** The transitions after `after` that `filter` accepts, oldest first; reset when `after` is older than the log. */
  after(after: EventId, filter: (e: JobEvent) => boolean): Replay {
    const first = this.firstOffset;
    if (first === undefined || after.offset < first) return { reset: true };
    // Binary search for the entry of `after.offset` (offsets ascend).
    let lo = this.#head;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#entries[mid]!.offset < after.offset) lo = mid + 1;
      else hi = mid;
    }
    return this.#from(lo - this.#head, after, filter);
  }

  #from(start: number, after: EventId, filter: (e: JobEvent) => boolean): Replay {
    const events: LoggedEvent[] = [];
    for (let i = this.#head + start; i < this.#entries.length; i++) {
      for (const logged of this.#entries[i]!.events) {
        if (compareEventIds(logged.id, after) > 0 && filter(logged.event)) events.push(logged);
      }
    }
    return { reset: false, events };
  }
}
