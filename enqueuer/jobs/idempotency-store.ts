import { createHash } from 'node:crypto';
import { GatewayError } from '../../shared/errors.ts';
import { oldestKey } from '../../shared/oldest-key.ts';

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
  /** Estimated bytes held for it (stored answer, key, fixed overhead). */
  bytes: number;
}

/** Bounds of the in-memory idempotency store. */
export interface MemoryIdempotencyLimits {
  /** Most keys kept. */
  maxKeys: number;
  /** Most bytes of stored answers (estimated: base64 body, headers, key) kept. @default unbounded */
  maxBytes?: number;
}

/** Fixed per-entry overhead counted against the byte bound (Map slot, objects, fingerprint). */
const ENTRY_OVERHEAD_BYTES = 256;

/** Estimated bytes an idempotency entry holds (strings counted as one byte per character: base64/ASCII). */
export function idempotencyEntryBytes(key: string, entry: IdempotencyEntry): number {
  let n = ENTRY_OVERHEAD_BYTES + key.length + entry.fingerprint.length;
  const a = entry.answer;
  if (a?.kind === 'sync') {
    n += a.bodyBase64.length + a.jobId.length;
    for (const [name, value] of Object.entries(a.headers)) n += name.length + value.length + 16;
  } else if (a) n += a.jobId.length;
  return n;
}

/**
 * In-process idempotency keys: at most `maxKeys` and `maxBytes` (least recently used evicted first)
 * and each expires after its TTL, so neither a flood of distinct keys nor large stored answers can
 * grow memory.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  #entries = new Map<string, MemoryEntry>();
  #maxKeys: number;
  #maxBytes: number;
  #bytes = 0;
  #now: () => number;
  evictions = 0;

  constructor(limits: number | MemoryIdempotencyLimits, now: () => number = Date.now) {
    const l = typeof limits === 'number' ? { maxKeys: limits } : limits;
    this.#maxKeys = l.maxKeys;
    this.#maxBytes = l.maxBytes ?? Number.POSITIVE_INFINITY;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Estimated bytes held (the `gw_idempotency_store_bytes` gauge). */
  get bytes(): number {
    return this.#bytes;
  }

  async claim(tenant: string, key: string, fingerprint: string, ttlMs: number): Promise<IdempotencyEntry | undefined> {
    const k = keyOf(tenant, key);
    const existing = this.#live(k);
    if (existing) return existing.entry;
    this.#set(k, { fingerprint }, this.#now() + ttlMs);
    return undefined;
  }

  async get(tenant: string, key: string): Promise<IdempotencyEntry | undefined> {
    return this.#live(keyOf(tenant, key))?.entry;
  }

  async complete(tenant: string, key: string, entry: Required<IdempotencyEntry>, ttlMs: number): Promise<void> {
    this.#set(keyOf(tenant, key), entry, this.#now() + ttlMs);
  }

  async release(tenant: string, key: string): Promise<void> {
    this.#delete(keyOf(tenant, key));
  }

  async sweep(): Promise<number> {
    const now = this.#now();
    let removed = 0;
    for (const [k, e] of this.#entries) {
      if (e.expiresAt <= now) {
        this.#delete(k);
        removed++;
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#bytes = 0;
  }

  /** The live entry, moved to the most recently used end. */
  #live(k: string): MemoryEntry | undefined {
    const e = this.#entries.get(k);
    if (!e) return undefined;
    if (e.expiresAt <= this.#now()) {
      this.#delete(k);
      return undefined;
    }
    this.#entries.delete(k);
    this.#entries.set(k, e);
    return e;
  }

  #delete(k: string): void {
    const e = this.#entries.get(k);
    if (!e) return;
    this.#entries.delete(k);
    this.#bytes -= e.bytes;
  }

  #set(k: string, entry: IdempotencyEntry, expiresAt: number): void {
    this.#delete(k);
    const bytes = idempotencyEntryBytes(k, entry);
    this.#entries.set(k, { entry, expiresAt, bytes });
    this.#bytes += bytes;
    // An answer larger than the whole bound evicts everything else and then itself: it is not kept.
    while (this.#entries.size > this.#maxKeys || (this.#bytes > this.#maxBytes && this.#entries.size > 0)) {
      this.#delete(oldestKey(this.#entries)!);
      this.evictions++;
    }
  }
}

function keyOf(tenant: string, key: string): string {
  return `${tenant}\u0000${key}`;
}
