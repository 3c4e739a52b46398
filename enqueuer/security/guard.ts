import type { Logger } from 'pino';
import { GatewayError } from '../../shared/errors.ts';
import { limitsFor, type SecurityConfig } from '../config.ts';
import { ApiKeyAuthenticator, type Principal } from './api-keys.ts';
import { limitMember, policyMember } from './rate-limit-headers.ts';
import { MemoryBucketStore, type BucketPolicy, type BucketStore } from './token-bucket.ts';

/** The principal of every request in development mode (`AUTH_MODE=none`). */
export const DEV_PRINCIPAL: Principal = Object.freeze({ tenant: 'default', keyId: 'dev', services: undefined, maxPriority: 'high' });

/** Rate-limit response headers to set (also on a 429). */
export interface RateLimitHeaders {
  policy: string;
  limit: string;
}

export interface GuardEvents {
  onAuthFailure?: (reason: 'missing' | 'invalid' | 'throttled') => void;
  onLimited?: (reason: 'rate' | 'inflight' | 'forbidden') => void;
}

/**
 * Authentication, per-service authorisation, per-tenant (and per-client) token buckets and the
 * per-tenant in-flight cap, as plain methods that throw typed errors; the HTTP middleware only wires
 * them. Policies are cached per tenant so the hot path allocates nothing per request but the key.
 */
export class Guard {
  readonly security: SecurityConfig;
  #authenticator: ApiKeyAuthenticator | undefined;
  #store: BucketStore;
  #authFailures = new MemoryBucketStore({ maxKeys: 50_000 });
  #authPolicy: BucketPolicy;
  #policies = new Map<string, { tenant?: BucketPolicy; client?: BucketPolicy; maxInflight: number; policyHeader: string }>();
  #inflight = new Map<string, number>();
  #events: GuardEvents;
  #logger: Logger;

  constructor(security: SecurityConfig, options: { store?: BucketStore; logger: Logger; events?: GuardEvents }) {
    this.security = security;
    this.#authenticator = security.authMode === 'api-keys' && security.keys ? new ApiKeyAuthenticator(security.keys) : undefined;
    this.#store = options.store ?? new MemoryBucketStore();
    this.#authPolicy = { name: 'auth', ratePerS: security.authFailuresPerMin / 60, burst: security.authFailuresPerMin };
    this.#events = options.events ?? {};
    this.#logger = options.logger;
  }

  /**
   * The caller's principal. 401 without a valid key; 429 once the source IP used up its failed
   * attempts (checked before the key, so a throttled IP learns nothing). The key never reaches a log.
   */
  authenticate(authorization: string | undefined, sourceIp: string): Principal {
    if (!this.#authenticator) return DEV_PRINCIPAL;
    const ipKey = `auth:${sourceIp}`;
    const before = this.#authFailures.takeSync(ipKey, this.#authPolicy, 0);
    if (before.remaining < 1) {
      this.#events.onAuthFailure?.('throttled');
      throw new GatewayError('GW_ERR_RATE_LIMITED', 'too many failed authentications from this address', { retryAfterS: retryS(before.retryAfterMs || 60_000 / this.security.authFailuresPerMin) });
    }
    const principal = this.#authenticator.authenticate(authorization);
    if (principal) return principal;
    const reason = authorization === undefined ? 'missing' : 'invalid';
    this.#authFailures.takeSync(ipKey, this.#authPolicy, 1);
    this.#events.onAuthFailure?.(reason);
    this.#logger.info({ sourceIp, reason }, 'authentication failed');
    throw new GatewayError('GW_ERR_UNAUTHORIZED', reason === 'missing' ? 'send Authorization: Bearer <api key>' : 'the API key is not valid');
  }

  /**
   * The service allow-list rule, for every route that names or returns a service: true when the
   * key may use `service` (keys without a list may use every service). Routes that *return* data
   * filter with it (a job of another service is a 404, its events are not streamed, its jobs not
   * listed); routes that *name* a service call {@link authorizeService} (403). See docs/security.md.
   */
  mayUse(principal: Principal, service: string): boolean {
    return principal.services === undefined || principal.services.has(service);
  }

  /** 403 when the key may not call `service` (also for names that do not exist, so keys cannot probe). */
  authorizeService(principal: Principal, service: string): void {
    if (!this.mayUse(principal, service)) {
      this.#events.onLimited?.('forbidden');
      throw new GatewayError('GW_ERR_FORBIDDEN', 'this API key may not call this service');
    }
  }

  #policiesFor(tenant: string) {
    let p = this.#policies.get(tenant);
    if (!p) {
      const l = limitsFor(this.security, tenant);
      const tenantPolicy = l.ratePerS > 0 ? { name: 'tenant', ratePerS: l.ratePerS, burst: l.burst } : undefined;
      const clientPolicy = l.clientRatePerS > 0 ? { name: 'client', ratePerS: l.clientRatePerS, burst: l.clientBurst } : undefined;
      const policyHeader = [tenantPolicy, clientPolicy].filter((x) => x !== undefined).map(policyMember).join(', ');
      p = { ...(tenantPolicy ? { tenant: tenantPolicy } : {}), ...(clientPolicy ? { client: clientPolicy } : {}), maxInflight: l.maxInflight, policyHeader };
      this.#policies.set(tenant, p);
    }
    return p;
  }

  /** True when a rate limit applies to the principal's requests (tenant or client bucket): only then is {@link takeRateLimit} needed. */
  isRateLimited(principal: Principal): boolean {
    const p = this.#policiesFor(principal.tenant);
    return p.tenant !== undefined || p.client !== undefined;
  }

  /**
   * Takes one token from the tenant's bucket and, where configured, from the key's bucket within the
   * tenant. Returns the headers to send; throws 429 (with `retryAfterS`) when a bucket is empty —
   * the caller sets the returned headers first, via `onHeaders`.
   */
  async takeRateLimit(principal: Principal, onHeaders: (h: RateLimitHeaders) => void): Promise<void> {
    const p = this.#policiesFor(principal.tenant);
    if (!p.tenant && !p.client) return;
    const members: string[] = [];
    let retryAfterMs = 0;
    if (p.tenant) {
      const r = await this.#store.take(`t:${principal.tenant}`, p.tenant);
      members.push(limitMember(p.tenant, r));
      if (!r.allowed) retryAfterMs = r.retryAfterMs;
    }
    if (p.client && retryAfterMs === 0) {
      const r = await this.#store.take(`c:${principal.tenant}:${principal.keyId}`, p.client);
      members.push(limitMember(p.client, r));
      if (!r.allowed) retryAfterMs = r.retryAfterMs;
    }
    onHeaders({ policy: p.policyHeader, limit: members.join(', ') });
    if (retryAfterMs > 0) {
      this.#events.onLimited?.('rate');
      throw new GatewayError('GW_ERR_RATE_LIMITED', `rate limit of tenant ${principal.tenant} exceeded`, { retryAfterS: retryS(retryAfterMs) });
    }
  }

  /** Counts a sync request against the tenant's in-flight cap; returns the release (call exactly once). */
  acquireInflight(tenant: string): () => void {
    const max = this.#policiesFor(tenant).maxInflight;
    const n = this.#inflight.get(tenant) ?? 0;
    if (n >= max) {
      this.#events.onLimited?.('inflight');
      throw new GatewayError('GW_ERR_TOO_MANY_INFLIGHT', `tenant has ${max} requests in flight`, { retryAfterS: 1 });
    }
    this.#inflight.set(tenant, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#inflight.get(tenant) ?? 1) - 1;
      if (left <= 0) this.#inflight.delete(tenant);
      else this.#inflight.set(tenant, left);
    };
  }

  /** In-flight sync requests of a tenant (tests, metrics). */
  inflightOf(tenant: string): number {
    return this.#inflight.get(tenant) ?? 0;
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

function retryS(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
