import type { BreakerEvent } from '../../shared/events.ts';

interface Known {
  state: BreakerEvent['state'];
  /** Local epoch ms until which the breaker stays open (local clock: hosts' clocks may differ). */
  openUntil: number;
}

/**
 * The latest breaker state per service, learnt from the dequeuers' breaker events, so the enqueuer
 * can shed sync requests of a service whose breaker is open before publishing them.
 */
export class BreakerBoard {
  #known = new Map<string, Known>();
  #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  apply(e: BreakerEvent): void {
    this.#known.set(e.service, { state: e.state, openUntil: e.state === 'open' ? this.#now() + e.retryAfterS * 1000 : 0 });
  }

  /** Seconds until the service's breaker lets a probe through, or undefined when it is not open. */
  openRetryAfterS(service: string): number | undefined {
    const k = this.#known.get(service);
    if (!k || k.state !== 'open') return undefined;
    const remainingMs = k.openUntil - this.#now();
    // Past the reset timeout the dequeuer half-opens on the next call: let requests through.
    return remainingMs > 0 ? Math.ceil(remainingMs / 1000) : undefined;
  }

  stateOf(service: string): BreakerEvent['state'] | undefined {
    return this.#known.get(service)?.state;
  }
}
