/**
 * In-flight jobs per tenant of one service in one dequeuer: the cap each tenant may hold (the
 * tenants file's `maxConcurrency`, else a share of the prefetch, lent beyond while no other
 * tenant's job can start, see `canBorrow`) and the noisy-neighbour flag, a
 * tenant holding on average more than `noisyFraction` of the service's slots over the last window
 * of `noisySustainMs`.
 */
export interface TenantSlotsOptions {
  /** Cap of a tenant the tenants file does not name. */
  defaultCap: number;
  /** `maxConcurrency` by tenant. */
  caps: Readonly<Record<string, number>>;
  noisyFraction: number;
  noisySustainMs: number;
  now?: () => number;
}

/** One tenant's view for the metrics. */
export interface TenantShare {
  tenant: string;
  inflight: number;
  /** In-flight jobs over the service's slots (its current limit). */
  share: number;
  noisy: boolean;
}

export class TenantSlots {
  readonly #o: TenantSlotsOptions;
  readonly #now: () => number;
  readonly #inflight = new Map<string, number>();
  /** In-flight × ms of each tenant in the current window (its average share, once divided). */
  readonly #area = new Map<string, number>();
  /** Tenants whose average share in the last full window exceeded the noisy fraction. */
  #noisy = new Set<string>();
  #windowStart: number;
  #lastAt: number;

  constructor(options: TenantSlotsOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#windowStart = this.#lastAt = this.#now();
  }

  capOf(tenant: string): number {
    return this.#o.caps[tenant] ?? this.#o.defaultCap;
  }

  inflightOf(tenant: string): number {
    return this.#inflight.get(tenant) ?? 0;
  }

  canStart(tenant: string): boolean {
    return this.inflightOf(tenant) < this.capOf(tenant);
  }

  /**
   * Whether `tenant`, at or over its default share, may take a slot no other tenant can use now:
   * the default share is work-conserving (a tenant alone is not held at 16 of 20 slots) but always
   * leaves one of the service's `slots` free, so a job of another tenant finds a slot at once. A
   * tenant the tenants file caps (`maxConcurrency`) never borrows.
   */
  canBorrow(tenant: string, slots: number): boolean {
    return this.#o.caps[tenant] === undefined && this.inflightOf(tenant) < slots - 1;
  }

  /** A job of `tenant` starts; `slots` is the service's current limit. */
  start(tenant: string, slots: number): void {
    this.#advance(slots);
    this.#inflight.set(tenant, this.inflightOf(tenant) + 1);
  }

  finish(tenant: string, slots: number): void {
    this.#advance(slots);
    const left = this.inflightOf(tenant) - 1;
    if (left > 0) this.#inflight.set(tenant, left);
    else this.#inflight.delete(tenant);
  }

  /**
   * Integrates in-flight jobs over time and closes the windows of `noisySustainMs` that ended: a
   * tenant is noisy while its average share of the slots over the last full window exceeds the
   * fraction (an average, so the dips between two waves of calls do not reset it).
   */
  #advance(slots: number): void {
    const now = this.#now();
    const w = Math.max(1, this.#o.noisySustainMs);
    const windowEnd = this.#windowStart + w;
    if (now >= windowEnd) {
      this.#accumulate(windowEnd);
      const noisy = new Set<string>();
      for (const [tenant, area] of this.#area) if (area / (w * Math.max(1, slots)) > this.#o.noisyFraction) noisy.add(tenant);
      this.#area.clear();
      // Windows that passed without any change: the in-flight counts held still through them.
      const idleWindows = Math.floor((now - windowEnd) / w);
      if (idleWindows > 0) {
        noisy.clear();
        for (const [tenant, n] of this.#inflight) if (n / Math.max(1, slots) > this.#o.noisyFraction) noisy.add(tenant);
      }
      this.#noisy = noisy;
      this.#windowStart = windowEnd + idleWindows * w;
      this.#lastAt = this.#windowStart;
    }
    this.#accumulate(now);
  }

  #accumulate(until: number): void {
    const dt = until - this.#lastAt;
    if (dt > 0) for (const [tenant, n] of this.#inflight) this.#area.set(tenant, (this.#area.get(tenant) ?? 0) + n * dt);
    this.#lastAt = until;
  }

  /** Every tenant with jobs in flight or flagged noisy, with its share of `slots` now. */
  shares(slots: number): TenantShare[] {
    this.#advance(slots);
    const out: TenantShare[] = [];
    for (const tenant of new Set([...this.#inflight.keys(), ...this.#noisy])) {
      const inflight = this.inflightOf(tenant);
      out.push({ tenant, inflight, share: inflight / Math.max(1, slots), noisy: this.#noisy.has(tenant) });
    }
    return out;
  }
}
