import type { Definitions } from './definitions.ts';

/** The broker users of a deployment: one per service, an operator and a read-only monitor. */
export const BROKER_USERS = Object.freeze({
  enqueuer: 'gw-enqueuer',
  dequeuer: 'gw-dequeuer',
  admin: 'gw-admin',
  monitoring: 'gw-monitor',
});

/** Per-vhost permission regexes (RabbitMQ checks configure, write and read separately). */
export interface Permission {
  user: string;
  configure: string;
  write: string;
  read: string;
}

/**
 * Least-privilege permissions for a topology prefix. Queue and exchange names
 * are `<prefix>.<service>.<kind>` with service names `[a-z0-9-]`, so a service segment can never
 * swallow a dot and reach another kind of object.
 *
 * - enqueuer: publish requests and replays to `<p>.work`, delayed jobs to `<p>.delay.L24`, DLQ
 *   rotations to `<p>.dlx`, `queued` events and its start marker to `<p>.events`; consume direct
 *   reply-to, the `<p>.events` stream (job and breaker events, delivery-limit deaths: the topology
 *   binds it to the dead-letter exchange), the DLQs (DLQ browse/replay API) and the `<p>.audit` stream
 *   (the audit trail); publish cancellations and audit entries to `<p>.control`. It configures
 *   nothing: it can neither consume a work or rpc queue nor declare, bind or delete any object.
 * - dequeuer: consume the rpc and work queues (every lane: `<p>.<svc>.work[.<n>|.high]`) and read the `<p>.cancellations` stream; publish replies (default exchange, checked as
 *   `amq.default`), retry copies (`<p>.work`, `<p>.delay.Lnn`) and events; configure nothing.
 * - admin: everything (imports definitions, runs the services with TOPOLOGY_MODE=assert if wanted).
 * - monitor: nothing on the vhost; the `monitoring` tag gives read-only management/metrics access.
 */
export function brokerPermissions(prefix = 'gw'): Permission[] {
  const p = prefix.replaceAll('.', '\\.');
  const svc = '[a-z0-9][a-z0-9-]*';
  return [
    {
      user: BROKER_USERS.enqueuer,
      configure: '^$',
      write: `^(${p}\\.work|${p}\\.dlx|${p}\\.events|${p}\\.delay\\.L24|${p}\\.control)$`,
      read: `^(amq\\.rabbitmq\\.reply-to|${p}\\.events|${p}\\.${svc}\\.dlq|${p}\\.audit)$`,
    },
    {
      user: BROKER_USERS.dequeuer,
      configure: '^$',
      write: `^(amq\\.default|${p}\\.work|${p}\\.events|${p}\\.delay\\.L\\d\\d)$`,
      read: `^(${p}\\.${svc}\\.(rpc|work|work\\.(\\d{1,2}|high))|${p}\\.cancellations)$`,
    },
    { user: BROKER_USERS.admin, configure: '.*', write: '.*', read: '.*' },
    { user: BROKER_USERS.monitoring, configure: '^$', write: '^$', read: '^$' },
  ];
}

/**
 * The users and permissions sections of the definitions. Every password hash is empty: nobody can
 * log in with a password until `scripts/set-broker-passwords.sh` sets one from the environment, so
 * no secret (not even a hash) lives in the repository.
 */
export function brokerAccess(prefix = 'gw', vhost = '/'): Pick<Definitions, 'users' | 'permissions'> {
  const tags: Record<string, string[]> = { [BROKER_USERS.admin]: ['administrator'], [BROKER_USERS.monitoring]: ['monitoring'] };
  return {
    users: Object.values(BROKER_USERS).map((name) => ({
      name,
      password_hash: '',
      hashing_algorithm: 'rabbit_password_hashing_sha256',
      tags: tags[name] ?? [],
      limits: {},
    })),
    permissions: brokerPermissions(prefix).map((perm) => ({ user: perm.user, vhost, configure: perm.configure, write: perm.write, read: perm.read })),
  };
}
