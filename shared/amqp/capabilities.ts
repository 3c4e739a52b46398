import { randomBytes } from 'node:crypto';
import type { ChannelModel } from 'amqplib';
import { GatewayError } from '../errors.ts';
import { assertTopology } from '../topology/assert.ts';
import type { Topology } from '../topology/topology.ts';

/** Queue types a topology may declare. */
export type QueueType = 'classic' | 'quorum' | 'stream';

/** What the broker offers, as probed once at start-up (docs/operations.md, "Broker capabilities"). */
export interface BrokerCapabilities {
  product: string;
  version: string;
  clusterName: string | undefined;
  /**
   * Feature flags relevant to the gateway (name → state: enabled, disabled, state_changing), read
   * from the management API; undefined when no management URL is configured or it did not answer.
   */
  featureFlags: Record<string, string> | undefined;
  /** Why `featureFlags` is undefined. */
  featureFlagsError: string | undefined;
  /** true = available, false = refused by the broker, undefined = not known (passive mode and no feature flags). */
  queueTypes: Record<QueueType, boolean | undefined>;
  /**
   * Per type: `declared` = a probe queue was declared and deleted (the types the topology needs, in
   * assert mode); `feature-flags` / `version` = inferred (the others, and every type in passive mode).
   */
  queueTypesSource: Record<'quorum' | 'stream', 'declared' | 'feature-flags' | 'version'>;
  /** Why a queue type is unavailable, by type. */
  queueTypeErrors: Partial<Record<QueueType, string>>;
  deliveryLimit: {
    /** The broker's default for quorum queues without `x-delivery-limit`: 20 from 4.0, none before. */
    brokerDefault: number | 'unlimited';
    /** What counts for each quorum work queue of the topology: its `x-delivery-limit`, else the default. */
    effective: Record<string, number | 'unlimited'>;
  };
}

/** Feature flags the gateway's behaviour depends on (when the broker has them). */
export const RELEVANT_FEATURE_FLAGS = ['quorum_queue', 'stream_queue', 'stream_single_active_consumer', 'classic_mirrored_queue_version', 'message_containers', 'khepri_db'] as const;

/** `3.10.8` → [3, 10, 8]; unparsable parts are 0. */
export function parseVersion(version: string): [number, number, number] {
  const [a = 0, b = 0, c = 0] = version.split(/[.+-]/).slice(0, 3).map((p) => Number.parseInt(p, 10) || 0);
  return [a, b, c];
}

function atLeast(version: string, major: number, minor: number): boolean {
  const [a, b] = parseVersion(version);
  return a > major || (a === major && b >= minor);
}

/** The queue types a topology declares (every queue without `x-queue-type` is classic). */
export function requiredQueueTypes(topology: Topology): Set<QueueType> {
  const types = new Set<QueueType>();
  for (const q of topology.queues) types.add(((q.arguments?.['x-queue-type'] as QueueType | undefined) ?? 'classic'));
  return types;
}

/**
 * Refuses (a typed {@link GatewayError} `GW_ERR_BROKER_INCAPABLE`) when a queue type the topology
 * needs is known to be missing. Unknown (passive mode without feature flags) is not a refusal: the
 * passive topology check then proves the queues exist.
 */
export function assertCapabilities(caps: BrokerCapabilities, required: Set<QueueType>): void {
  const missing = [...required].filter((t) => caps.queueTypes[t] === false);
  if (missing.length === 0) return;
  const why = missing.map((t) => `${t} queues (${caps.queueTypeErrors[t] ?? 'not offered'})`).join(', ');
  throw new GatewayError('GW_ERR_BROKER_INCAPABLE',
    `${caps.product} ${caps.version} lacks ${why}; the topology declares ${[...required].sort().join(', ')} queues. ` +
    'Quorum queues need RabbitMQ >= 3.8, streams >= 3.9, each with its feature flag enabled (rabbitmqctl enable_feature_flag all).');
}

export interface ProbeOptions {
  topology: Topology;
  /** Passive mode: the user may not declare, so queue types are inferred instead of probed. */
  passive: boolean;
  /** Management API base URL with credentials, for the feature flags. */
  managementUrl?: string | undefined;
  /** Bound on the management request. @default 2000 */
  managementTimeoutMs?: number;
}

/**
 * Probes the broker on an open connection: version and product from the AMQP handshake, feature
 * flags from the management API (when configured), queue types by declaring and deleting a probe
 * queue of each type (`<prefix>.probe.<random>.<type>`, inside the prefix the app user may
 * configure), and the delivery limit that applies to each quorum work queue.
 */
export async function probeBroker(conn: ChannelModel, opts: ProbeOptions): Promise<BrokerCapabilities> {
  const props = (conn.connection as unknown as { serverProperties?: Record<string, unknown> }).serverProperties ?? {};
  const version = String(props.version ?? 'unknown');
  const product = String(props.product ?? 'unknown');
  const clusterName = props.cluster_name === undefined ? undefined : String(props.cluster_name);

  let featureFlags: Record<string, string> | undefined;
  let featureFlagsError: string | undefined;
  if (opts.managementUrl) {
    try {
      featureFlags = await readFeatureFlags(opts.managementUrl, opts.managementTimeoutMs ?? 2_000);
    } catch (err) {
      featureFlagsError = (err as Error).message;
    }
  } else {
    featureFlagsError = 'RABBITMQ_MANAGEMENT_URL not set';
  }

  const queueTypes: Record<QueueType, boolean | undefined> = { classic: true, quorum: undefined, stream: undefined };
  const queueTypeErrors: Partial<Record<QueueType, string>> = {};
  const queueTypesSource = {} as BrokerCapabilities['queueTypesSource'];
  const required = requiredQueueTypes(opts.topology);
  const minVersion: Record<'quorum' | 'stream', [number, number]> = { quorum: [3, 8], stream: [3, 9] };
  for (const type of ['quorum', 'stream'] as const) {
    if (!opts.passive && required.has(type)) {
      // Proof by doing: one durable queue of the type, declared and deleted at once. Only for the
      // types the topology needs, so a start costs the broker one such queue per needed type.
      const error = await declareProbe(conn, `${opts.topology.names.prefix}.probe.${randomBytes(4).toString('hex')}.${type}`, type);
      queueTypes[type] = error === undefined;
      if (error !== undefined) queueTypeErrors[type] = error;
      queueTypesSource[type] = 'declared';
    } else if (featureFlags) {
      const flag = featureFlags[`${type}_queue`];
      queueTypes[type] = flag === 'enabled' || (flag === undefined && atLeast(version, ...minVersion[type]));
      if (!queueTypes[type]) queueTypeErrors[type] = `feature flag ${type}_queue is ${flag ?? 'absent'}`;
      queueTypesSource[type] = 'feature-flags';
    } else {
      // A version that predates the type means it is missing; a newer one may still have the flag off.
      if (!atLeast(version, ...minVersion[type])) [queueTypes[type], queueTypeErrors[type]] = [false, `RabbitMQ ${version} < ${minVersion[type].join('.')}`];
      queueTypesSource[type] = 'version';
    }
  }

  const brokerDefault = atLeast(version, 4, 0) ? 20 : 'unlimited';
  const effective: Record<string, number | 'unlimited'> = {};
  for (const q of opts.topology.queues) {
    if (q.arguments?.['x-queue-type'] !== 'quorum' || !q.name.endsWith('.work')) continue;
    const limit = q.arguments['x-delivery-limit'];
    effective[q.name] = typeof limit === 'number' ? limit : brokerDefault;
  }
  return { product, version, clusterName, featureFlags, featureFlagsError, queueTypes, queueTypesSource, queueTypeErrors, deliveryLimit: { brokerDefault, effective } };
}

/** Declares and deletes one durable queue of `type` on its own channel; the broker's refusal text, or undefined. */
async function declareProbe(conn: ChannelModel, name: string, type: 'quorum' | 'stream'): Promise<string | undefined> {
  const ch = await conn.createChannel();
  let closed = false;
  ch.on('error', () => undefined);
  ch.on('close', () => {
    closed = true;
  });
  try {
    await ch.assertQueue(name, { durable: true, arguments: { 'x-queue-type': type } });
    await ch.deleteQueue(name);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    if (!closed) await ch.close().catch(() => undefined);
  }
}

/** A GET on the management API (`path` relative to its base, e.g. `api/feature-flags`) with the URL's credentials; the parsed JSON. */
export async function managementJson<T>(managementUrl: string, path: string, timeoutMs: number): Promise<T> {
  const base = new URL(managementUrl);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  base.username = '';
  base.password = '';
  const url = new URL(path, base.href.endsWith('/') ? base.href : `${base.href}/`);
  const res = await fetch(url, { headers: { authorization: auth }, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`management API ${url.origin}${url.pathname} answered ${res.status}`);
  return (await res.json()) as T;
}

/** GET /api/feature-flags → the relevant flags' states. */
async function readFeatureFlags(managementUrl: string, timeoutMs: number): Promise<Record<string, string>> {
  const flags = await managementJson<Array<{ name: string; state: string }>>(managementUrl, 'api/feature-flags', timeoutMs);
  const relevant: readonly string[] = RELEVANT_FEATURE_FLAGS;
  return Object.fromEntries(flags.filter((f) => relevant.includes(f.name)).map((f) => [f.name, f.state]));
}

/** One log/readyz-friendly line: `RabbitMQ 3.10.8, quorum yes, stream yes, delivery limit gw.echo.work=5`. */
export function summarizeCapabilities(caps: BrokerCapabilities): string {
  const yn = (v: boolean | undefined): string => (v === undefined ? 'unknown' : v ? 'yes' : 'no');
  const limits = Object.entries(caps.deliveryLimit.effective).map(([q, l]) => `${q}=${l}`).join(' ');
  return `${caps.product} ${caps.version}, quorum ${yn(caps.queueTypes.quorum)}, stream ${yn(caps.queueTypes.stream)}` +
    `${limits ? `, delivery limit ${limits}` : ''} (default ${caps.deliveryLimit.brokerDefault})`;
}

/** The gauge {@link CapabilityProbe} sets: `gw_broker_info{product,version,quorum,stream,delivery_limit_default} 1`. */
export interface BrokerInfoGauge {
  set(labels: Record<'product' | 'version' | 'quorum' | 'stream' | 'delivery_limit_default', string>, value: number): void;
}

/**
 * Probes once per process, on the first connection that gets to set-up: logs the result once,
 * sets the info metric, keeps it for `/readyz`, and refuses (throws `GW_ERR_BROKER_INCAPABLE`)
 * when the topology needs a queue type the broker lacks.
 */
export class CapabilityProbe {
  #caps: BrokerCapabilities | undefined;
  readonly #opts: ProbeOptions & { logger: { info: (obj: object, msg: string) => void }; gauge: BrokerInfoGauge };

  constructor(opts: ProbeOptions & { logger: { info: (obj: object, msg: string) => void }; gauge: BrokerInfoGauge }) {
    this.#opts = opts;
  }

  /** What the probe found; undefined until the first connection. */
  get capabilities(): BrokerCapabilities | undefined {
    return this.#caps;
  }

  async run(conn: ChannelModel): Promise<void> {
    if (this.#caps) return;
    const caps = await probeBroker(conn, this.#opts);
    this.#caps = caps;
    this.#opts.logger.info({ broker: caps }, `broker capabilities: ${summarizeCapabilities(caps)}`);
    const yn = (v: boolean | undefined): string => (v === undefined ? 'unknown' : String(v));
    this.#opts.gauge.set({
      product: caps.product,
      version: caps.version,
      quorum: yn(caps.queueTypes.quorum),
      stream: yn(caps.queueTypes.stream),
      delivery_limit_default: String(caps.deliveryLimit.brokerDefault),
    }, 1);
    assertCapabilities(caps, requiredQueueTypes(this.#opts.topology));
  }
}

/**
 * For {@link BrokerConnectionOptions.isFatal}: the refusals retrying cannot fix (a broker without a
 * queue type the topology needs; a dequeuer whose services outlast the consumer timeout).
 */
export function isCapabilityError(err: unknown): boolean {
  return err instanceof GatewayError && (err.code === 'GW_ERR_BROKER_INCAPABLE' || err.code === 'GW_ERR_CONSUMER_TIMEOUT_UNSAFE');
}

/**
 * The start-up gate of a service's main connection, shared by both services: the capability probe
 * (once per process) and then the topology (asserted, or checked passively), run by the connection's
 * `setup` on every (re)connect before anything else uses it.
 */
export function brokerGate(opts: {
  topology: Topology;
  topologyMode: 'assert' | 'passive';
  managementUrl: string | undefined;
  logger: { info: (obj: object, msg: string) => void };
  gauge: BrokerInfoGauge;
}): { probe: CapabilityProbe; check: (conn: ChannelModel) => Promise<void> } {
  const passive = opts.topologyMode === 'passive';
  const probe = new CapabilityProbe({ topology: opts.topology, passive, managementUrl: opts.managementUrl, logger: opts.logger, gauge: opts.gauge });
  return {
    probe,
    check: async (conn) => {
      await probe.run(conn);
      await assertTopology(conn, opts.topology, { passive });
    },
  };
}
