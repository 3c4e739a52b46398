import { createHash } from 'node:crypto';
import { GatewayError } from '../../shared/errors.ts';

/** The answer a repeated request gets back. */
export type IdempotentAnswer =
  | { kind: 'async'; jobId: string }
  | { kind: 'sync'; jobId: string; status: number; headers: Record<string, string>; bodyBase64: string };

/** What is stored under a key: the request's fingerprint and, once known, its answer. */
export interface IdempotencyEntry {
  fingerprint: string;
  /** Absent while the first request is still in flight. */
  answer?: IdempotentAnswer;
}

/**
 * Idempotency keys (draft-ietf-httpapi-idempotency-key-header), scoped per tenant. `claim` is
 * atomic: of any number of concurrent claims for one key exactly one wins.
 */
export interface IdempotencyStore {
  /** Claims the key for `ttlMs`; resolves undefined when this caller won, else with what is stored. */
  claim(tenant: string, key: string, fingerprint: string, ttlMs: number): Promise<IdempotencyEntry | undefined>;
  get(tenant: string, key: string): Promise<IdempotencyEntry | undefined>;
  /** Stores the answer for `ttlMs` (the key's full lifetime starts now). */
  complete(tenant: string, key: string, entry: Required<IdempotencyEntry>, ttlMs: number): Promise<void>;
  /** Frees a claim whose request failed before anything was accepted, so a retry can go through. */
  release(tenant: string, key: string): Promise<void>;
  sweep(): Promise<number>;
  close(): Promise<void>;
}

const KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * The `Idempotency-Key` value: an RFC 8941 string (`"…"`) or, as many clients send it, a bare token;
 * printable ASCII, 1–255 characters. Anything else is a 400.
 */
export function parseIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (Array.isArray(header)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'Idempotency-Key given more than once');
  const raw = header.trim();
  const key = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  if (!KEY.test(key)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'Idempotency-Key must be 1-255 printable ASCII characters');
  return key;
}

/** Fingerprint of a request: same key with a different fingerprint is a 422. */
export function requestFingerprint(r: { mode: string; method: string; service: string; path: string; query: string; body: Buffer }): string {
  const bodyHash = createHash('sha256').update(r.body).digest('hex');
  return createHash('sha256').update([r.mode, r.method, r.service, r.path, r.query, bodyHash].join('\n')).digest('base64url');
}

interface MemoryEntry {
  entry: IdempotencyEntry;
  expiresAt: number;
}

/**
 * In-process idempotency keys: at most `maxKeys` (least recently used evicted first) and each
 * expires after its TTL, so a flood of distinct keys cannot grow memory.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  #entries = new Map<string, MemoryEntry>();
  #maxKeys: number;
  #now: () => number;
  evictions = 0;

  constructor(maxKeys: number, now: () => number = Date.now) {
    this.#maxKeys = maxKeys;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  async claim(tenant: string, key: string, fingerprint: string, ttlMs: number): Promise<IdempotencyEntry | undefined> {
    const k = keyOf(tenant, key);
    const existing = this.#live(k);
    if (existing) return existing.entry;
    this.#set(k, { entry: { fingerprint }, expiresAt: this.#now() + ttlMs });
    return undefined;
  }

  async get(tenant: string, key: string): Promise<IdempotencyEntry | undefined> {
    return this.#live(keyOf(tenant, key))?.entry;
  }

  async complete(tenant: string, key: string, entry: Required<IdempotencyEntry>, ttlMs: number): Promise<void> {
    this.#set(keyOf(tenant, key), { entry, expiresAt: this.#now() + ttlMs });
  }

  async release(tenant: string, key: string): Promise<void> {
    this.#entries.delete(keyOf(tenant, key));
  }

  async sweep(): Promise<number> {
    const now = this.#now();
    let removed = 0;
    for (const [k, e] of this.#entries) {
      if (e.expiresAt <= now) {
        this.#entries.delete(k);
        removed++;
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    this.#entries.clear();
  }

  #live(k: string): MemoryEntry | undefined {
    const e = this.#entries.get(k);
    if (e && e.expiresAt <= this.#now()) {
      this.#entries.delete(k);
      return undefined;
    }
    return e;
  }

  #set(k: string, e: MemoryEntry): void {
    this.#entries.delete(k);
    this.#entries.set(k, e);
    while (this.#entries.size > this.#maxKeys) {
      this.#entries.delete(this.#entries.keys().next().value as string);
      this.evictions++;
    }
  }
}

function keyOf(tenant: string, key: string): string {
  return `${tenant}\u0000${key}`;
}
