import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, formatZodIssues } from './services.ts';

/**
 * The dequeuer's view of the tenants file (the `tenants` section of the keys document,
 * `API_KEYS_FILE` / `API_KEYS_JSON`): only each tenant's `maxConcurrency`. The enqueuer validates the
 * whole document strictly; here the keys and the other limits are not read.
 */
const tenantsViewSchema = z.looseObject({
  tenants: z.record(z.string(), z.looseObject({ maxConcurrency: z.number().int().min(1).max(100_000).optional() })).default({}),
});

/** The environment variables {@link loadTenantConcurrency} reads (the keys document's). */
export const TENANTS_ENV_KEYS = ['API_KEYS_FILE', 'API_KEYS_JSON'] as const;

/** `maxConcurrency` by tenant from the keys document, or {} when no document is configured. */
export function loadTenantConcurrency(env: NodeJS.ProcessEnv): Readonly<Record<string, number>> {
  let text: string;
  let source = 'API_KEYS_JSON';
  if (env.API_KEYS_JSON) text = env.API_KEYS_JSON;
  else if (env.API_KEYS_FILE) {
    source = `API_KEYS_FILE (${env.API_KEYS_FILE})`;
    try {
      text = readFileSync(env.API_KEYS_FILE, 'utf8');
    } catch (err) {
      throw new ConfigError(source, [`cannot read: ${(err as Error).message}`]);
    }
  } else return Object.freeze({});
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(source, [`not valid JSON: ${(err as Error).message}`]);
  }
  const parsed = tenantsViewSchema.safeParse(doc);
  if (!parsed.success) throw new ConfigError(source, formatZodIssues(parsed.error));
  const caps: Record<string, number> = {};
  for (const [tenant, limits] of Object.entries(parsed.data.tenants)) if (limits.maxConcurrency !== undefined) caps[tenant] = limits.maxConcurrency;
  return Object.freeze(caps);
}
