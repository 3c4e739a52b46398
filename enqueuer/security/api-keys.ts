import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, formatZodIssues } from '../../shared/config/services.ts';
import { SERVICE_NAME_PATTERN } from '../../shared/topology/names.ts';

/** Tenant names travel in AMQP headers, logs and Redis keys, so they are restricted. */
export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const limitsSchema = z.strictObject({
  /** Token refill per second for the whole tenant (0 = no limit). */
  ratePerS: z.number().min(0).optional(),
  /** Bucket size (requests allowed at once after a quiet period). */
  burst: z.number().int().min(1).optional(),
  /** Per API key (client) within the tenant; off unless set. */
  clientRatePerS: z.number().min(0).optional(),
  clientBurst: z.number().int().min(1).optional(),
  /** Sync requests of the tenant waiting for a reply at once (per replica). */
  maxInflight: z.number().int().min(1).optional(),
  /** Jobs of the tenant in flight per service per dequeuer (read by the dequeuer, shared/config/tenants.ts). */
  maxConcurrency: z.number().int().min(1).max(100_000).optional(),
});

/** Limits for one tenant; unset fields take the environment's defaults. */
export type TenantLimits = z.infer<typeof limitsSchema>;

/** The keys document (`API_KEYS_FILE` / `API_KEYS_JSON`). Only hashes, never keys. */
export const keysFileSchema = z.strictObject({
  keys: z.array(
    z.strictObject({
      /** Non-secret id of the key: shown in logs and used as the client id for per-client limits. */
      id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
      /** sha256 of the key, lower-case hex. */
      sha256: z.string().regex(/^[0-9a-f]{64}$/, 'sha256 hex of the key (64 lower-case hex digits)'),
      tenant: z.string().regex(TENANT_PATTERN),
      /** Services this key may call; omitted = all. */
      services: z.array(z.string().regex(SERVICE_NAME_PATTERN)).optional(),
      /** Highest `Gw-Priority` this key may send. @default normal */
      maxPriority: z.enum(['normal', 'high']).default('normal'),
    }),
  ),
  tenants: z.record(z.string().regex(TENANT_PATTERN), limitsSchema).default({}),
});

export type KeysFile = z.infer<typeof keysFileSchema>;

/** Who is calling: the authenticated tenant and key. */
export interface Principal {
  tenant: string;
  /** Key id (client id); `dev` in development mode. */
  keyId: string;
  /** Services the key may call; undefined = all. */
  services: ReadonlySet<string> | undefined;
  /** Highest `Gw-Priority` the key may send (keys file `maxPriority`). */
  maxPriority: 'normal' | 'high';
}

/** sha256 hex of a key, as stored in the keys file. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Parses a keys document; ids must be unique, and so must hashes. */
export function parseKeysFile(doc: unknown, source: string): KeysFile {
  const parsed = keysFileSchema.safeParse(doc);
  if (!parsed.success) throw new ConfigError(source, formatZodIssues(parsed.error));
  const ids = new Set<string>();
  const hashes = new Set<string>();
  for (const k of parsed.data.keys) {
    if (ids.has(k.id)) throw new ConfigError(source, [`duplicate key id ${k.id}`]);
    if (hashes.has(k.sha256)) throw new ConfigError(source, [`key ${k.id} has the same hash as another key`]);
    ids.add(k.id);
    hashes.add(k.sha256);
  }
  return parsed.data;
}

/** The environment variables {@link loadKeysFile} reads (documented in docs/configuration.md). */
export const KEYS_ENV_KEYS = ['API_KEYS_FILE', 'API_KEYS_JSON'] as const;

/** Reads the keys document from `API_KEYS_JSON` or `API_KEYS_FILE`; undefined when neither is set. */
export function loadKeysFile(env: NodeJS.ProcessEnv): KeysFile | undefined {
  let text: string;
  let source: string;
  if (env.API_KEYS_JSON) {
    text = env.API_KEYS_JSON;
    source = 'API_KEYS_JSON';
  } else if (env.API_KEYS_FILE) {
    source = `API_KEYS_FILE (${env.API_KEYS_FILE})`;
    try {
      text = readFileSync(env.API_KEYS_FILE, 'utf8');
    } catch (err) {
      throw new ConfigError(source, [`cannot read: ${(err as Error).message}`]);
    }
  } else {
    return undefined;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(source, [`not valid JSON: ${(err as Error).message}`]);
  }
  return parseKeysFile(doc, source);
}

const BEARER = /^Bearer +([A-Za-z0-9._~+/-]{16,512}=*) *$/;

interface StoredKey {
  digest: Buffer;
  principal: Principal;
}

/**
 * Checks `Authorization: Bearer <key>` against the stored hashes. The presented key is hashed and
 * compared with every stored digest in constant time (no early exit), so timing tells nothing about
 * which key or how many bytes matched.
 */
export class ApiKeyAuthenticator {
  #keys: StoredKey[];

  constructor(file: KeysFile) {
    this.#keys = file.keys.map((k) => ({
      digest: Buffer.from(k.sha256, 'hex'),
      principal: Object.freeze({ tenant: k.tenant, keyId: k.id, services: k.services ? new Set(k.services) : undefined, maxPriority: k.maxPriority }),
    }));
  }

  /** The principal for an `Authorization` header value, or undefined (missing, malformed or unknown key). */
  authenticate(authorization: string | undefined): Principal | undefined {
    if (authorization === undefined) return undefined;
    const m = BEARER.exec(authorization);
    if (!m) return undefined;
    const digest = createHash('sha256').update(m[1]!, 'utf8').digest();
    let found: Principal | undefined;
    for (const k of this.#keys) if (timingSafeEqual(k.digest, digest)) found = k.principal;
    return found;
  }
}
