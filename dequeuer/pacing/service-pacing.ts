import type { AttemptOutcome } from '../classify.ts';
import { aimdLimit, aimdOverload, aimdSuccess, initialAimd, isOverloadSignal, type AimdSettings, type AimdState } from './aimd.ts';

export interface ServicePacingOptions extends AimdSettings {
  /** Longest pause one `Retry-After` imposes (ms). */
  maxPauseMs: number;
  /** The limit changed (gauge, and a chance to start more jobs). */
  onLimit: (limit: number) => void;
  /** A 429/503 asked to come back later: no job of the service starts before `untilMs`. */
  onPause: (untilMs: number, retryAfterS: number) => void;
  now?: () => number;
}

/** One service's adaptive limit fed by its job attempts' outcomes (the arithmetic is in aimd.ts). */
export class ServicePacing {
  readonly #o: ServicePacingOptions;
  readonly #now: () => number;
  #state: AimdState;
  #limit: number;
  /** Calls begun and not yet recorded, by their begin sequence (ascending: insertion order). */
  readonly #inFlight = new Set<number>();
  #seq = 0;

  constructor(options: ServicePacingOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#state = initialAimd(options);
    this.#limit = aimdLimit(this.#state, options);
  }

  get limit(): number {
    return this.#limit;
  }

  /** A downstream call starts; its token goes to `record` (or `end` when it produced no outcome). */
  begin(): number {
    const token = ++this.#seq;
    this.#inFlight.add(token);
    return token;
  }

  /** The call of `token` ended without an outcome to learn from (e.g. refused by an open breaker). */
  end(token: number | undefined): void {
    if (token !== undefined) this.#inFlight.delete(token);
  }

  /** Records what an attempt that started at `startedAt` (epoch ms; `token` from `begin`) produced. */
  record(outcome: AttemptOutcome, startedAt: number, token?: number): void {
    this.end(token);
    const now = this.#now();
    const signal = outcome.kind === 'response' ? { status: outcome.status } : { failure: outcome.failure };
    if (isOverloadSignal(signal) && outcome.kind === 'response' && outcome.retryAfterS !== undefined && this.#o.maxPauseMs > 0) {
      // The downstream said when to come back: the pause is the pacing. Cutting as well would leave
      // the service at the floor after every pause (one call per Retry-After).
      this.#o.onPause(now + Math.min(outcome.retryAfterS * 1000, this.#o.maxPauseMs), outcome.retryAfterS);
    } else if (isOverloadSignal(signal)) {
      // The burst cap (what was served beside this call) only means something for an answered
      // 429/503: a timeout or a refused connect says nothing about how many calls the downstream held.
      const older = outcome.kind === 'response' && token !== undefined ? this.#olderInFlight(token) : Infinity;
      this.#state = aimdOverload(this.#state, this.#o, startedAt, now, older);
    } else if (outcome.kind === 'response' && outcome.status < 400) {
      this.#state = aimdSuccess(this.#state, this.#o);
    }
    const limit = aimdLimit(this.#state, this.#o);
    if (limit !== this.#limit) {
      this.#limit = limit;
      this.#o.onLimit(limit);
    }
  }

  /** Calls begun before `token` and still running. */
  #olderInFlight(token: number): number {
    let n = 0;
    for (const t of this.#inFlight) {
      if (t >= token) break;
      n++;
    }
    return n;
  }
}
