import { GatewayError } from '../../shared/errors.ts';

/**
 * Whether a submission is taken now, and the count of those in flight (a graceful stop waits for
 * them). Open while the enqueuer runs and, once it drains, until its listener closes: a load
 * balancer still routes here until it has seen `/readyz` fail.
 */
export class Admission {
  #open = false;
  #inflight = 0;
  #idleWaiters: Array<() => void> = [];
  #broker: { assertUsable(): void };

  constructor(broker: { assertUsable(): void }) {
    this.#broker = broker;
  }

  open(): void {
    this.#open = true;
  }

  close(): void {
    this.#open = false;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Throws the typed 503 when closed, or when the broker cannot take a publish now. */
  assertAccepting(): void {
    if (!this.#open) throw new GatewayError('GW_ERR_SHUTTING_DOWN', undefined, { retryAfterS: 1 });
    this.#broker.assertUsable();
  }

  /** Counts `work` in flight until it settles. */
  track<T>(work: Promise<T>): Promise<T> {
    this.#inflight++;
    return work.finally(() => {
      if (--this.#inflight === 0) for (const w of this.#idleWaiters.splice(0)) w();
    });
  }

  /** Resolves when nothing is in flight, or after `graceMs`. */
  async idle(graceMs: number): Promise<void> {
    if (this.#inflight === 0) return;
    await Promise.race([
      new Promise<void>((resolve) => this.#idleWaiters.push(resolve)),
      new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
    ]);
  }
}
