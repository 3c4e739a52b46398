import { pino } from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import { limitsFor, loadEnqueuerConfig, testEnqueuerConfig, type SecurityConfig } from '../../enqueuer/config.ts';
import { ApiKeyAuthenticator, hashKey, parseKeysFile } from '../../enqueuer/security/api-keys.ts';
import { Guard } from '../../enqueuer/security/guard.ts';
import { limitMember, policyMember } from '../../enqueuer/security/rate-limit-headers.ts';
import { MemoryBucketStore, takeTokens, type BucketPolicy } from '../../enqueuer/security/token-bucket.ts';
import { parseServices } from '../../shared/config/services.ts';

const policy: BucketPolicy = { name: 'tenant', ratePerS: 10, burst: 20 };
const silent = pino({ level: 'silent' });
const KEY_A = 'key-a-0123456789abcdef';
const KEY_B = 'key-b-0123456789abcdef';

function security(overrides: Partial<SecurityConfig> = {}): SecurityConfig {
  return {
    authMode: 'api-keys',
    keys: parseKeysFile({
      keys: [
        { id: 'a1', sha256: hashKey(KEY_A), tenant: 'a', services: ['echo'] },
        { id: 'b1', sha256: hashKey(KEY_B), tenant: 'b' },
      ],
      tenants: { a: { ratePerS: 1, burst: 2, maxInflight: 1 } },
    }, 'test'),
    defaults: { ratePerS: 0, burst: 1, clientRatePerS: 0, clientBurst: 1, maxInflight: 100 },
    authFailuresPerMin: 3,
    redisUrl: undefined,
    ...overrides,
  };
}

describe('token bucket', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('allows exactly the burst at once, then refills at the rate', () => {
    let state;
    const results = [];
    for (let i = 0; i < 21; i++) {
      const r = takeTokens(state, policy, 1000);
      state = r.state;
      results.push(r.result.allowed);
    }
    expect(results.filter(Boolean)).toHaveLength(20);
    expect(results[20]).toBe(false);
    const denied = takeTokens(state, policy, 1000).result;
    expect(denied.retryAfterMs).toBe(100);
    expect(denied.resetMs).toBe(2000);
    expect(takeTokens(state, policy, 1100).result.allowed).toBe(true);
    expect(takeTokens(state, policy, 1_000_000).state.tokens).toBe(19);
  });

  it('keeps a bounded number of buckets in memory', () => {
    const store = new MemoryBucketStore({ maxKeys: 10 });
    for (let i = 0; i < 100; i++) store.takeSync(`k${i}`, policy);
    expect(store.size).toBe(10);
  });

  it('renders RateLimit-Policy and RateLimit in the draft-10 structured-field syntax', () => {
    expect(policyMember(policy)).toBe('"tenant";q=20;w=2');
    expect(limitMember(policy, { allowed: false, remaining: 0, retryAfterMs: 100, resetMs: 2000 })).toBe('"tenant";r=0;t=2');
  });
});

describe('API keys', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('maps a valid bearer key to its tenant and rejects missing, malformed and unknown keys', () => {
    const auth = new ApiKeyAuthenticator(security().keys!);
    expect(auth.authenticate(`Bearer ${KEY_A}`)).toMatchObject({ tenant: 'a', keyId: 'a1' });
    expect(auth.authenticate(`Bearer ${KEY_B}`)).toMatchObject({ tenant: 'b', keyId: 'b1', services: undefined });
    for (const bad of [undefined, '', 'Bearer', `Basic ${KEY_A}`, `Bearer ${KEY_A}x`, `bearer${KEY_A}`, 'Bearer short', `Bearer ${hashKey(KEY_A)}`, `Bearer ${KEY_A}\r\nx`]) {
      expect(auth.authenticate(bad)).toBeUndefined();
    }
  });

  it('refuses a keys file with duplicate ids or hashes, or a plain key in place of a hash', () => {
    const k = { id: 'x', sha256: hashKey(KEY_A), tenant: 't' };
    expect(() => parseKeysFile({ keys: [k, { ...k, sha256: hashKey(KEY_B) }] }, 't')).toThrow(/duplicate key id/);
    expect(() => parseKeysFile({ keys: [k, { ...k, id: 'y' }] }, 't')).toThrow(/same hash/);
    expect(() => parseKeysFile({ keys: [{ ...k, sha256: KEY_A }] }, 't')).toThrow(/sha256/);
  });

  it('chooses development mode only when no keys are configured, and refuses contradictions', () => {
    const services = JSON.stringify({ services: { echo: { url: 'http://127.0.0.1:1' } } });
    const keys = JSON.stringify({ keys: [{ id: 'x', sha256: hashKey(KEY_A), tenant: 't' }] });
    expect(testEnqueuerConfig({ services: parseServices({ services: { echo: { url: 'http://127.0.0.1:1' } } }) }).security.authMode).toBe('none');
    expect(testLoad({ SERVICES_JSON: services, API_KEYS_JSON: keys }).security.authMode).toBe('api-keys');
    expect(() => testLoad({ SERVICES_JSON: services, AUTH_MODE: 'api-keys' })).toThrow(/needs API_KEYS_FILE/);
    expect(() => testLoad({ SERVICES_JSON: services, AUTH_MODE: 'none', API_KEYS_JSON: keys })).toThrow(/contradicts/);
  });
});

const testLoad = (env: Record<string, string>) => loadEnqueuerConfig(env);

describe('guard', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('answers 401 for bad keys, then 429 once the source IP spent its failure budget, even for a good key', () => {
    const guard = new Guard(security(), { logger: silent });
    for (let i = 0; i < 3; i++) expect(() => guard.authenticate('Bearer wrong-key-0123456789', '10.0.0.1')).toThrow(expect.objectContaining({ code: 'GW_ERR_UNAUTHORIZED' }));
    expect(() => guard.authenticate(`Bearer ${KEY_A}`, '10.0.0.1')).toThrow(expect.objectContaining({ code: 'GW_ERR_RATE_LIMITED', status: 429 }));
    expect(guard.authenticate(`Bearer ${KEY_A}`, '10.0.0.2').tenant).toBe('a');
  });

  it('answers 403 for a service outside the key list, including names that do not exist', () => {
    const guard = new Guard(security(), { logger: silent });
    const a = guard.authenticate(`Bearer ${KEY_A}`, '::1');
    expect(() => guard.authorizeService(a, 'echo')).not.toThrow();
    for (const s of ['pdf', 'nope']) expect(() => guard.authorizeService(a, s)).toThrow(expect.objectContaining({ code: 'GW_ERR_FORBIDDEN', status: 403 }));
  });

  it('rate-limits one tenant with headers while another tenant without a limit is untouched', async () => {
    const guard = new Guard(security(), { logger: silent });
    const a = guard.authenticate(`Bearer ${KEY_A}`, '::1');
    const b = guard.authenticate(`Bearer ${KEY_B}`, '::1');
    const seen: string[] = [];
    await guard.takeRateLimit(a, (h) => seen.push(`${h.policy} | ${h.limit}`));
    await guard.takeRateLimit(a, (h) => seen.push(`${h.policy} | ${h.limit}`));
    await expect(guard.takeRateLimit(a, (h) => seen.push(`${h.policy} | ${h.limit}`))).rejects.toMatchObject({ code: 'GW_ERR_RATE_LIMITED', retryAfterS: 1 });
    expect(seen).toEqual(['"tenant";q=2;w=2 | "tenant";r=1;t=1', '"tenant";q=2;w=2 | "tenant";r=0;t=2', '"tenant";q=2;w=2 | "tenant";r=0;t=2']);
    for (let i = 0; i < 50; i++) await guard.takeRateLimit(b, () => seen.push('b'));
    expect(seen.filter((s) => s === 'b')).toHaveLength(0);
  });

  it('limits each key of a tenant on its own bucket where per-client limits are configured', async () => {
    const KEY_A2 = 'key-a2-0123456789abcdef';
    const s = security();
    const keys = parseKeysFile({
      keys: [...s.keys!.keys, { id: 'a2', sha256: hashKey(KEY_A2), tenant: 'a' }],
      tenants: { a: { ratePerS: 100, burst: 100, clientRatePerS: 1, clientBurst: 2 } },
    }, 'test');
    const guard = new Guard({ ...s, keys }, { logger: silent });
    const a1 = guard.authenticate(`Bearer ${KEY_A}`, '::1');
    const a2 = guard.authenticate(`Bearer ${KEY_A2}`, '::1');
    let last = '';
    await guard.takeRateLimit(a1, () => undefined);
    await guard.takeRateLimit(a1, () => undefined);
    await expect(guard.takeRateLimit(a1, (h) => (last = `${h.policy} | ${h.limit}`))).rejects.toMatchObject({ code: 'GW_ERR_RATE_LIMITED' });
    expect(last).toBe('"tenant";q=100;w=1, "client";q=2;w=2 | "tenant";r=97;t=1, "client";r=0;t=2');
    await expect(guard.takeRateLimit(a2, () => undefined)).resolves.toBeUndefined();
  });

  it('caps in-flight sync requests per tenant and releases each slot once', () => {
    const guard = new Guard(security(), { logger: silent });
    const release = guard.acquireInflight('a');
    expect(() => guard.acquireInflight('a')).toThrow(expect.objectContaining({ code: 'GW_ERR_TOO_MANY_INFLIGHT', status: 429 }));
    const other = guard.acquireInflight('b');
    release();
    release();
    expect(guard.inflightOf('a')).toBe(0);
    guard.acquireInflight('a');
    other();
    expect(guard.inflightOf('b')).toBe(0);
  });

  it('fills tenant limits from the defaults', () => {
    const s = security({ defaults: { ratePerS: 5, burst: 10, clientRatePerS: 1, clientBurst: 3, maxInflight: 7 } });
    expect(limitsFor(s, 'b')).toEqual({ ratePerS: 5, burst: 10, clientRatePerS: 1, clientBurst: 3, maxInflight: 7 });
    expect(limitsFor(s, 'a')).toEqual({ ratePerS: 1, burst: 2, clientRatePerS: 1, clientBurst: 3, maxInflight: 1 });
  });

  it('in development mode every request is tenant "default"', () => {
    const guard = new Guard(security({ authMode: 'none', keys: undefined }), { logger: silent });
    expect(guard.authenticate(undefined, '::1')).toMatchObject({ tenant: 'default', keyId: 'dev' });
  });
});
