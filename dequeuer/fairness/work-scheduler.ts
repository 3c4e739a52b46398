import type { Lane } from '../../shared/topology/names.ts';
import type { Disposition } from '../queue-consumer.ts';
import type { TenantSlots } from './tenant-slots.ts';

interface Waiting {
  tenant: string;
  run: () => Promise<Disposition>;
  resolve: (d: Disposition) => void;
  reject: (err: unknown) => void;
}

export interface WorkSchedulerOptions {
  /** The service's lanes: normal ones and `high`. */
  lanes: readonly Lane[];
  /** Share of starts kept for normal jobs while high ones wait. */
  normalMinShare: number;
  slots: TenantSlots;
  /** Jobs allowed to run now (adaptive limit; 1 while the breaker is half-open, 0 while open). */
  limit: () => number;
  now?: () => number;
}

/**
 * Decides which delivered job of a service runs next (docs/adr/1700-fair-lanes-priority-pacing.md).
 * Each lane's consumer hands its deliveries here; a job starts while fewer than `limit()` run, its
 * tenant is under its cap and no `Retry-After` pause holds the service. High-lane jobs go first, but
 * after `⌈1/normalMinShare⌉ − 1` high starts in a row a waiting normal job starts; normal lanes
 * take turns (round-robin), and within a lane the oldest job whose tenant has a free slot starts.
 * When none can, a tenant without `maxConcurrency` may borrow an idle slot beyond its default share,
 * all but one (`TenantSlots.canBorrow`).
 */
export class WorkScheduler {
  readonly #o: WorkSchedulerOptions;
  readonly #now: () => number;
  readonly #normal: Waiting[][];
  readonly #high: Waiting[] = [];
  readonly #byLane = new Map<Lane, Waiting[]>();
  readonly #highRun: number;
  #rr = 0;
  #highStreak = 0;
  #running = 0;
  #waiting = 0;
  #pausedUntil = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: WorkSchedulerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#normal = options.lanes.filter((l) => l !== 'high').map(() => []);
    let i = 0;
    for (const lane of options.lanes) this.#byLane.set(lane, lane === 'high' ? this.#high : this.#normal[i++]!);
    this.#highRun = Math.max(1, Math.ceil(1 / options.normalMinShare) - 1);
  }

  get running(): number {
    return this.#running;
  }
  get waiting(): number {
    return this.#waiting;
  }
  /** Epoch ms until which no job starts (0 or past: not paused). */
  get pausedUntil(): number {
    return this.#pausedUntil;
  }

  /** Queues a delivered job; resolves with its disposition once it ran (or was handed back). */
  submit(lane: Lane, tenant: string, run: () => Promise<Disposition>): Promise<Disposition> {
    const queue = this.#byLane.get(lane) ?? this.#normal[0]!;
    return new Promise<Disposition>((resolve, reject) => {
      queue.push({ tenant, run, resolve, reject });
      this.#waiting++;
      this.pump();
    });
  }

  /** No job of the service starts before `untilMs` (a later pause extends an earlier one). */
  pauseUntil(untilMs: number): void {
    if (untilMs <= this.#pausedUntil) return;
    this.#pausedUntil = untilMs;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armResume();
  }

  /**
   * A timer for the pause end. The pump it runs re-arms it when the clock has not reached the end
   * yet: a timer may fire a millisecond before `Date.now()` gets there, and with every slot free and
   * no delivery coming (the prefetch all waiting here) nothing else would pump again.
   */
  #armResume(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.pump();
    }, Math.max(1, this.#pausedUntil - this.#now()));
    this.#timer.unref();
  }

  /** Starts every job the limit, the caps and the pause allow. */
  pump(): void {
    if (this.#now() < this.#pausedUntil) {
      this.#armResume();
      return;
    }
    for (;;) {
      const slots = this.#o.limit();
      if (this.#running >= slots) return;
      const next = this.#pick() ?? this.#borrow(slots);
      if (!next) return;
      this.#start(next, slots);
    }
  }

  /** Hands every waiting job back (stop): resolves them with `disposition`; returns how many. */
  releaseWaiting(disposition: Disposition = 'requeue'): number {
    let n = 0;
    for (const queue of [this.#high, ...this.#normal]) for (const w of queue.splice(0)) {
      w.resolve(disposition);
      n++;
    }
    this.#waiting = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    return n;
  }

  #start(w: Waiting, slots: number): void {
    this.#running++;
    this.#waiting--;
    this.#o.slots.start(w.tenant, slots);
    let run: Promise<Disposition>;
    try {
      run = w.run();
    } catch (err) {
      run = Promise.reject(err);
    }
    void run.then(w.resolve, w.reject).finally(() => {
      this.#running--;
      this.#o.slots.finish(w.tenant, this.#o.limit());
      this.pump();
    });
  }

  /** Removes and returns the next job to start, or undefined when none may start. */
  #pick(): Waiting | undefined {
    const highAt = this.#eligible(this.#high);
    const normal = this.#nextNormal();
    if (highAt >= 0 && !(normal && this.#highStreak >= this.#highRun)) {
      this.#highStreak = normal ? this.#highStreak + 1 : 0;
      return this.#high.splice(highAt, 1)[0];
    }
    if (!normal) return undefined;
    this.#highStreak = 0;
    this.#rr = (normal.lane + 1) % this.#normal.length;
    return this.#normal[normal.lane]!.splice(normal.at, 1)[0];
  }

  /**
   * When no waiting job may start within its tenant's cap: the oldest job (high lane first, then
   * the normal lanes round-robin) whose tenant may borrow an otherwise idle slot.
   */
  #borrow(slots: number): Waiting | undefined {
    const canBorrow = (w: Waiting): boolean => this.#o.slots.canBorrow(w.tenant, slots);
    const highAt = this.#high.findIndex(canBorrow);
    if (highAt >= 0) return this.#high.splice(highAt, 1)[0];
    const n = this.#normal.length;
    for (let k = 0; k < n; k++) {
      const lane = (this.#rr + k) % n;
      const at = this.#normal[lane]!.findIndex(canBorrow);
      if (at >= 0) {
        this.#rr = (lane + 1) % n;
        return this.#normal[lane]!.splice(at, 1)[0];
      }
    }
    return undefined;
  }

  /** The next normal lane (round-robin from the last one served) with a startable job. */
  #nextNormal(): { lane: number; at: number } | undefined {
    const n = this.#normal.length;
    for (let k = 0; k < n; k++) {
      const lane = (this.#rr + k) % n;
      const at = this.#eligible(this.#normal[lane]!);
      if (at >= 0) return { lane, at };
    }
    return undefined;
  }

  /** Index of the oldest job in `queue` whose tenant has a free slot, or −1. */
  #eligible(queue: readonly Waiting[]): number {
    for (let i = 0; i < queue.length; i++) if (this.#o.slots.canStart(queue[i]!.tenant)) return i;
    return -1;
  }
}
