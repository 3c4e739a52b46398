import type { Topology } from './topology.ts';

/** RabbitMQ definitions document (the subset the gateway writes). */
export interface Definitions {
  rabbit_version?: string;
  vhosts: Array<{ name: string }>;
  users: Array<Record<string, unknown>>;
  permissions: Array<Record<string, unknown>>;
  policies: Array<Record<string, unknown>>;
  exchanges: Array<{ name: string; vhost: string; type: string; durable: boolean; auto_delete: boolean; internal: boolean; arguments: Record<string, unknown> }>;
  queues: Array<{ name: string; vhost: string; durable: boolean; auto_delete: boolean; arguments: Record<string, unknown> }>;
  bindings: Array<{ source: string; vhost: string; destination: string; destination_type: string; routing_key: string; arguments: Record<string, unknown> }>;
}

export interface DefinitionsOptions {
  vhost?: string;
  /** Users and their permissions (least privilege); passwords never live here. */
  users?: Definitions['users'];
  permissions?: Definitions['permissions'];
}

/** Renders a topology as a definitions file the broker imports at boot (same data the services assert). */
export function toDefinitions(topology: Topology, options: DefinitionsOptions = {}): Definitions {
  const vhost = options.vhost ?? '/';
  return {
    vhosts: [{ name: vhost }],
    users: options.users ?? [],
    permissions: options.permissions ?? [],
    policies: [],
    exchanges: topology.exchanges.map((e) => ({ name: e.name, vhost, type: e.type, durable: true, auto_delete: false, internal: false, arguments: { ...e.arguments } })),
    queues: topology.queues.map((q) => ({ name: q.name, vhost, durable: true, auto_delete: false, arguments: { ...q.arguments } })),
    bindings: topology.bindings.map((b) => ({
      source: b.source,
      vhost,
      destination: b.destination,
      destination_type: b.destinationType,
      routing_key: b.routingKey,
      arguments: {},
    })),
  };
}

/** The definitions file content, stable for diffing. */
export function renderDefinitions(defs: Definitions): string {
  return `${JSON.stringify(defs, null, 2)}\n`;
}
