import { z } from 'zod';
import { brokerEnvShape, brokerSettings, envInt, parseEnv, type BrokerSettings } from '../shared/config/env.ts';
import { deepFreeze, loadServices, type Services } from '../shared/config/services.ts';
import { loadTenantConcurrency } from '../shared/config/tenants.ts';

export const dequeuerEnvShape = {
  ...brokerEnvShape,
  /** HTTP port for /healthz, /readyz, /metrics. @default 8090 */
  PORT: envInt(0, 65535, 8090),
  /** HTTP bind address. @default 0.0.0.0 */
  HOST: z.string().default('0.0.0.0'),
  /** How long a stop waits for in-flight deliveries before handing them back (ms). @default 15000 */
  SHUTDOWN_GRACE_MS: envInt(0, 600_000, 15_000),
  /** Publish confirm timeout for events and retry copies (ms). @default 5000 */
  PUBLISH_TIMEOUT_MS: envInt(100, 60_000, 5000),
  /** Largest downstream result body stored with a job (bytes). @default 65536 */
  MAX_RESULT_BYTES: envInt(0, 10 * 1024 * 1024, 64 * 1024),
  /**
   * `true` asks the broker, before each sync call, whether the requester's reply channel still
   * exists (one passive declare, shared by the concurrent requests of one channel); a request whose
   * client already had a 503 is then skipped instead of reaching the downstream. @default true
   */
  SYNC_CHECK_REQUESTER: z.enum(['true', 'false']).default('true'),
  /**
   * The broker's consumer (ack) timeout (ms): `consumer_timeout` of the node (30 min by default from
   * 3.8.15), the per-queue `x-consumer-timeout` / `consumer-timeout` policy when set (read from the
   * management API when `RABBITMQ_MANAGEMENT_URL` is set, and then preferred). A service whose
   * longest hold of a delivery reaches it is refused at start-up, above half of it is a warning.
   * @default 1800000
   */
  BROKER_CONSUMER_TIMEOUT_MS: envInt(1000, 2_147_483_647, 1_800_000),
  /** Only consume these services (comma-separated); default all. */
  CONSUME_SERVICES: z.string().optional(),
  /** A tenant holding more than this share of a service's job slots … @default 0.5 */
  NOISY_TENANT_FRACTION: z.coerce.number().min(0).max(1).default(0.5),
  /** … for this long is flagged noisy (`gw_tenant_noisy`) (ms). @default 30000 */
  NOISY_TENANT_SUSTAIN_MS: envInt(0, 86_400_000, 30_000),
};

/** Everything the dequeuer reads, validated and frozen. */
export interface DequeuerConfig extends BrokerSettings {
  port: number;
  host: string;
  services: Services;
  /** Services this process consumes. */
  consume: readonly string[];
  shutdownGraceMs: number;
  publishTimeoutMs: number;
  maxResultBytes: number;
  /** Skip sync requests whose requester is gone (SYNC_CHECK_REQUESTER). */
  checkRequester: boolean;
  /** In-flight jobs per service allowed to a tenant (tenants file `maxConcurrency`), by tenant. */
  tenantConcurrency: Readonly<Record<string, number>>;
  noisyTenantFraction: number;
  noisyTenantSustainMs: number;
  /** The broker's consumer timeout as configured (BROKER_CONSUMER_TIMEOUT_MS). */
  brokerConsumerTimeoutMs: number;
}

export function loadDequeuerConfig(env: NodeJS.ProcessEnv): DequeuerConfig {
  const e = parseEnv(dequeuerEnvShape, env, 'dequeuer environment');
  const services = loadServices(env);
  const consume = e.CONSUME_SERVICES ? e.CONSUME_SERVICES.split(',').map((s) => s.trim()).filter(Boolean) : Object.keys(services);
  const unknown = consume.filter((s) => !services[s]);
  if (unknown.length) throw new Error(`CONSUME_SERVICES names unknown services: ${unknown.join(', ')}`);
  return deepFreeze({
    port: e.PORT,
    host: e.HOST,
    ...brokerSettings(e),
    services,
    consume,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    publishTimeoutMs: e.PUBLISH_TIMEOUT_MS,
    maxResultBytes: e.MAX_RESULT_BYTES,
    checkRequester: e.SYNC_CHECK_REQUESTER === 'true',
    tenantConcurrency: loadTenantConcurrency(env),
    noisyTenantFraction: e.NOISY_TENANT_FRACTION,
    noisyTenantSustainMs: e.NOISY_TENANT_SUSTAIN_MS,
    brokerConsumerTimeoutMs: e.BROKER_CONSUMER_TIMEOUT_MS,
  });
}
