import { GatewayError } from '../../shared/errors.ts';

/**
 * Slots for server-sent-event streams: at most `maxTotal` open on this replica and `maxPerTenant`
 * per tenant, so one tenant holding its share cannot lock the others out. `reserve` is synchronous
 * (call it before the handler's first await), so concurrent opens cannot all pass the check.
 */
export class StreamSlots {
  readonly maxTotal: number;
  readonly maxPerTenant: number;
  #total = 0;
  #perTenant = new Map<string, number>();

  constructor(maxTotal: number, maxPerTenant: number) {
    this.maxTotal = maxTotal;
    this.maxPerTenant = maxPerTenant;
  }

  get total(): number {
    return this.#total;
  }

  /** Takes a slot for `tenant` (429 `GW_ERR_TOO_MANY_INFLIGHT` when none is free); returns its release (idempotent). */
  reserve(tenant: string): () => void {
    const mine = this.#perTenant.get(tenant) ?? 0;
    if (mine >= this.maxPerTenant) throw new GatewayError('GW_ERR_TOO_MANY_INFLIGHT', `tenant has ${this.maxPerTenant} event streams open`, { retryAfterS: 5 });
    if (this.#total >= this.maxTotal) throw new GatewayError('GW_ERR_TOO_MANY_INFLIGHT', 'too many event streams open', { retryAfterS: 5 });
    this.#total++;
    this.#perTenant.set(tenant, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      const left = (this.#perTenant.get(tenant) ?? 1) - 1;
      if (left <= 0) this.#perTenant.delete(tenant);
      else this.#perTenant.set(tenant, left);
    };
  }
}
