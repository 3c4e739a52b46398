import { TERMINAL_STATES, type JobEvent } from '../../shared/events.ts';
import { oldestKey } from '../../shared/oldest-key.ts';

/** Counted per minute for the overview's charts. */
export const ACTIVITY_KINDS = ['accepted', 'succeeded', 'failed', 'dead', 'cancelled'] as const;
export type ActivityKind = (typeof ACTIVITY_KINDS)[number];

/** Minutes of history kept (the overview charts the last 15). */
export const ACTIVITY_MINUTES = 15;

interface Series {
  /** Minute index (epoch minute) of slot 0's start, advancing as time passes. */
  counts: Map<number, Record<ActivityKind, number>>;
  /** Jobs not yet finished: id → created at, for the oldest job's age and the running count. */
  active: Map<string, { createdAt: number; running: boolean }>;
}

export interface ActivityView {
  /** Epoch ms of each minute's start, oldest first (`ACTIVITY_MINUTES` of them, the current one last). */
  minutes: number[];
  counts: Record<ActivityKind, number[]>;
  /** Jobs known to be unfinished, and of them those running (delivered, unacked). */
  active: number;
  running: number;
  /** Epoch ms the oldest unfinished job was created, if any. */
  oldestCreatedAt: number | undefined;
}

/**
 * Per tenant and service: transitions per minute over the last 15 minutes and the unfinished jobs,
 * from the job events every replica hears (so every replica shows the same). Bounded: at most
 * `maxActive` unfinished jobs tracked per replica (beyond it the oldest are forgotten).
 */
export class ActivityBoard {
  #series = new Map<string, Series>();
  #now: () => number;
  #maxActive: number;
  #activeTotal = 0;
  /**
   * Jobs that finished lately (bounded like the active ones): a transition reaching the stream after
   * the final one (the enqueuer's `queued` of a quick job) must not make a job unfinished again.
   */
  #finished = new Set<string>();

  constructor(options: { now?: () => number; maxActive?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#maxActive = options.maxActive ?? 100_000;
  }

  apply(e: JobEvent): void {
    const s = this.#seriesOf(e.tenant, e.service);
    const kind: ActivityKind | undefined = e.state === 'queued' ? (e.attempt === 1 && !e.replay ? 'accepted' : undefined) : (ACTIVITY_KINDS as readonly string[]).includes(e.state) ? (e.state as ActivityKind) : undefined;
    if (kind) {
      const minute = Math.floor(e.at / 60_000);
      let c = s.counts.get(minute);
      if (!c) {
        s.counts.set(minute, (c = { accepted: 0, succeeded: 0, failed: 0, dead: 0, cancelled: 0 }));
        const oldest = Math.floor(this.#now() / 60_000) - ACTIVITY_MINUTES;
        for (const m of s.counts.keys()) if (m <= oldest) s.counts.delete(m);
      }
      c[kind]++;
    }
    const job = `${e.tenant}\u0000${e.jobId}`;
    if (TERMINAL_STATES.has(e.state)) {
      if (s.active.delete(e.jobId)) this.#activeTotal--;
      this.#finished.add(job);
      if (this.#finished.size > this.#maxActive) this.#finished.delete(oldestKey(this.#finished)!);
    } else {
      // Only a replay reopens a finished job.
      if (this.#finished.has(job) && !e.replay) return;
      this.#finished.delete(job);
      const known = s.active.get(e.jobId);
      if (!known) {
        if (this.#activeTotal >= this.#maxActive) return;
        this.#activeTotal++;
      }
      // A late `queued` (after the job's `running`) does not stop it running.
      const running = e.state === 'running' || (e.state === 'queued' && !e.replay && known?.running === true);
      s.active.set(e.jobId, { createdAt: known?.createdAt ?? e.enqueuedAt ?? e.at, running });
    }
  }

  view(tenant: string, service: string): ActivityView {
    const s = this.#series.get(`${tenant}\u0000${service}`);
    const current = Math.floor(this.#now() / 60_000);
    const minutes: number[] = [];
    const counts = Object.fromEntries(ACTIVITY_KINDS.map((k) => [k, [] as number[]])) as Record<ActivityKind, number[]>;
    for (let m = current - ACTIVITY_MINUTES + 1; m <= current; m++) {
      minutes.push(m * 60_000);
      const c = s?.counts.get(m);
      for (const k of ACTIVITY_KINDS) counts[k].push(c?.[k] ?? 0);
    }
    let oldest: number | undefined;
    let running = 0;
    for (const a of s?.active.values() ?? []) {
      if (oldest === undefined || a.createdAt < oldest) oldest = a.createdAt;
      if (a.running) running++;
    }
    return { minutes, counts, active: s?.active.size ?? 0, running, oldestCreatedAt: oldest };
  }

  #seriesOf(tenant: string, service: string): Series {
    const key = `${tenant}\u0000${service}`;
    let s = this.#series.get(key);
    if (!s) this.#series.set(key, (s = { counts: new Map(), active: new Map() }));
    return s;
  }
}
