import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { Ajv } from 'ajv';
import { beforeEach, describe, expect, it } from 'vitest';
import { parseServices } from '../../shared/config/services.ts';
import { loadDequeuerConfig } from '../../dequeuer/config.ts';
import { loadEnqueuerConfig } from '../../enqueuer/config.ts';

/** The parts of a compose service these tests read. */
interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  volumes?: Array<string | { type?: string; source?: string; target?: string }>;
  ports?: Array<string | number | { published?: string | number; target?: number; host_ip?: string }>;
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[] };
  restart?: string;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const composeText = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
const compose = parse(composeText, { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
};
const services = compose.services;
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
const GENERATED_DEFINITIONS = './rabbitmq/definitions.json';

/** `${VAR:-default}` → default (what compose uses when VAR is unset). */
function interpolate(value: string): string {
  return value.replace(/\$\{[A-Z0-9_]+(?::?-([^}]*))?\}/g, (_m, fallback: string | undefined) => fallback ?? '');
}

function environment(svc: ComposeService): Record<string, string> {
  const env = svc.environment ?? {};
  const pairs = Array.isArray(env) ? env.map((e) => e.split(/=(.*)/s, 2) as [string, string]) : Object.entries(env);
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(String(v ?? ''))]));
}

/** Bind mounts from the repository: source path (as written, `./…`) → container path. */
function repoMounts(svc: ComposeService): Array<{ source: string; target: string }> {
  const out: Array<{ source: string; target: string }> = [];
  for (const v of svc.volumes ?? []) {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target];
    if (source?.startsWith('./') && target) out.push({ source, target });
  }
  return out;
}

function commandOf(svc: ComposeService): string[] {
  const c = svc.command;
  return Array.isArray(c) ? c : (c ?? '').split(/\s+/).filter(Boolean);
}

function dependencies(svc: ComposeService): string[] {
  const d = svc.depends_on ?? [];
  return Array.isArray(d) ? d : Object.keys(d);
}

function filesUnder(path: string): string[] {
  return statSync(path).isDirectory() ? readdirSync(path).flatMap((f) => filesUnder(join(path, f))) : [path];
}

/** Gateway env as the process would see it in compose, with the services file read from the repo. */
function gatewayEnv(name: string): NodeJS.ProcessEnv {
  const svc = services[name]!;
  const env: NodeJS.ProcessEnv = environment(svc);
  const mount = repoMounts(svc).find((m) => m.target === env.SERVICES_FILE);
  if (!mount) throw new Error(`${name}: SERVICES_FILE ${env.SERVICES_FILE} is not mounted from the repository`);
  env.SERVICES_JSON = readFileSync(join(root, mount.source), 'utf8');
  return env;
}

/** Named volumes a service mounts: volume name → container path. */
function namedVolumes(svc: ComposeService): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of svc.volumes ?? []) {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target];
    if (source && target && !source.startsWith('.') && !source.startsWith('/')) out[source] = target;
  }
  return out;
}

/**
 * The compose specification's JSON schema (draft-07), as the maintained compose linter dclint ships
 * it (schemas/compose.schema.json, current: `name`, `include`, `develop`, `models`), compiled
 * offline with ajv. `strict: false`: the spec uses annotations ajv's strict mode does not know.
 */
function composeValidator(): (data: unknown) => string[] {
  const schema = JSON.parse(readFileSync(join(root, 'node_modules/dclint/schemas/compose.schema.json'), 'utf8')) as Record<string, unknown>;
  expect(schema.$id).toBe('compose_spec.json');
  // Draft-07 named by its https URL, which ajv registers as http: the Ajv class is draft-07 anyway.
  expect(schema.$schema).toBe('https://json-schema.org/draft-07/schema');
  delete schema.$schema;
  const ajv = new Ajv({ strict: false, allErrors: true, allowUnionTypes: true });
  const validate = ajv.compile(schema);
  return (data) => (validate(data) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''} ${JSON.stringify(e.params)}`));
}

/** Where each stateful service keeps its data inside its container. */
const DATA_DIRS: Record<string, string> = {
  rabbitmq: '/var/lib/rabbitmq',
  redis: '/data',
  prometheus: '/prometheus',
  alertmanager: '/alertmanager',
  grafana: '/var/lib/grafana',
};

const buildsFromDockerfile = Object.entries(services).filter(([, s]) => s.build !== undefined);

describe('docker-compose.yml', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('is valid against the compose specification schema, which rejects a misspelt key', () => {
    const validate = composeValidator();
    // Unmerged (as compose reads it: YAML merge keys are resolved by the YAML parser either way).
    expect(validate(parse(composeText, { merge: true }))).toEqual([]);
    const broken = parse(composeText, { merge: true }) as { services: Record<string, Record<string, unknown>> };
    broken.services.redis!.healthcheck = { test: ['CMD', 'redis-cli', 'ping'], intervall: '5s' };
    broken.services.enqueuer!.depends_on = { redis: { condition: 'service_healthy', required: 'yes' } };
    const errors = validate(broken);
    expect(errors.join('\n')).toContain('/services/redis/healthcheck must NOT have additional properties');
    expect(errors.join('\n')).toContain('/services/enqueuer/depends_on/redis/required must be boolean');
  });

  it('gives every service a health check and a restart policy, and waits only on healthy services', () => {
    expect(Object.keys(services).sort()).toEqual(['alertmanager', 'demo', 'dequeuer', 'enqueuer', 'grafana', 'prometheus', 'rabbitmq', 'redis']);
    for (const [name, svc] of Object.entries(services)) {
      expect(svc.restart, `${name} restart`).toBe('unless-stopped');
      const test = svc.healthcheck?.test;
      expect(Array.isArray(test) && test[0] === 'CMD' && test.length > 1, `${name} healthcheck ${JSON.stringify(test)}`).toBe(true);
      expect(Array.isArray(svc.depends_on), `${name}: depends_on must name a condition`).toBe(false);
      for (const [dep, cond] of Object.entries(svc.depends_on ?? {})) {
        expect(cond, `${name} -> ${dep}`).toEqual({ condition: 'service_healthy' });
      }
    }
  });

  it('keeps the state of every stateful service in a declared named volume at its data directory', () => {
    const declared = Object.keys(compose.volumes ?? {}).sort();
    const used: string[] = [];
    for (const [name, dir] of Object.entries(DATA_DIRS)) {
      const volumes = namedVolumes(services[name]!);
      const volume = Object.entries(volumes).find(([, target]) => target === dir)?.[0];
      expect(volume, `${name}: no named volume at ${dir}`).toBeDefined();
      used.push(...Object.keys(volumes));
    }
    for (const name of Object.keys(services).filter((n) => !(n in DATA_DIRS))) {
      expect(namedVolumes(services[name]!), `${name} is stateless`).toEqual({});
    }
    expect(declared).toEqual([...new Set(used)].sort());
    // Redis persists (append-only file), so job status and idempotency keys survive a restart.
    expect(commandOf(services.redis!)).toEqual(expect.arrayContaining(['--appendonly', 'yes']));
  });

  it('gives the enqueuer the compose Redis for job state, after Redis is healthy', () => {
    const cfg = loadEnqueuerConfig(gatewayEnv('enqueuer'));
    expect(new URL(cfg.redisUrl ?? '').host).toBe('redis:6379');
    expect(services.enqueuer?.depends_on).toMatchObject({ redis: { condition: 'service_healthy' } });
    expect(services.redis?.ports, 'Redis stays on the compose network').toBeUndefined();
  });

  it('documents every variable the file reads in .env.example, and nothing else', () => {
    const used = [...new Set([...composeText.matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!))].sort();
    const example = readFileSync(join(root, '.env.example'), 'utf8');
    const documented = [...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]!).sort();
    expect(used.length).toBeGreaterThan(5);
    expect(documented).toEqual(used);
    expect(readFileSync(join(root, '.gitignore'), 'utf8')).toMatch(/^\.env$/m);
  });

  it('names only existing services in depends_on', () => {
    for (const [name, svc] of Object.entries(services)) {
      for (const dep of dependencies(svc)) expect(Object.keys(services), `${name} depends on ${dep}`).toContain(dep);
    }
  });

  it('waits for a healthy broker before starting the enqueuer and the dequeuer', () => {
    for (const name of ['enqueuer', 'dequeuer']) {
      expect(services[name]?.depends_on).toMatchObject({ rabbitmq: { condition: 'service_healthy' } });
    }
    expect(services.rabbitmq?.healthcheck?.test).toEqual(['CMD', 'rabbitmq-diagnostics', '-q', 'ping']);
  });

  it('mounts only files that exist in the repository, and each of them parses', () => {
    const mounts = Object.values(services).flatMap(repoMounts).filter((m) => m.source !== GENERATED_DEFINITIONS);
    expect(mounts.length).toBeGreaterThan(5);
    for (const { source } of mounts) {
      const path = join(root, source);
      expect(existsSync(path), `${source} is mounted but missing`).toBe(true);
      for (const file of filesUnder(path)) {
        const text = readFileSync(file, 'utf8');
        if (file.endsWith('.json')) expect(() => JSON.parse(text) as unknown, file).not.toThrow();
        if (/\.ya?ml$/.test(file)) expect(() => parse(text) as unknown, file).not.toThrow();
      }
    }
  });

  it('mounts the generated definitions, rabbitmq.conf and enabled_plugins into the broker', () => {
    expect(repoMounts(services.rabbitmq!)).toEqual(expect.arrayContaining([
      { source: './rabbitmq/rabbitmq.conf', target: '/etc/rabbitmq/rabbitmq.conf' },
      { source: './rabbitmq/enabled_plugins', target: '/etc/rabbitmq/enabled_plugins' },
      { source: GENERATED_DEFINITIONS, target: '/etc/rabbitmq/definitions.json' },
    ]));
    expect(readFileSync(join(root, 'rabbitmq/rabbitmq.conf'), 'utf8')).toMatch(/^load_definitions = \/etc\/rabbitmq\/definitions\.json$/m);
    expect(readFileSync(join(root, 'rabbitmq/enabled_plugins'), 'utf8').trim()).toBe('[rabbitmq_management,rabbitmq_prometheus].');
  });

  it('has the generated definitions file the broker mounts (`npm run definitions` writes it)', () => {
    expect(existsSync(join(root, GENERATED_DEFINITIONS))).toBe(true);
  });

  it('starts every service built from the Dockerfile with an entry file that exists and is copied into the image', () => {
    expect(buildsFromDockerfile.map(([name]) => name).sort()).toEqual(['demo', 'dequeuer', 'enqueuer']);
    const copied = [...dockerfile.matchAll(/^COPY\s+(?!--from)(\S+)\s+\S+\s*$/gm)].map((m) => m[1]!);
    for (const [name, svc] of buildsFromDockerfile) {
      const [bin, entry] = commandOf(svc);
      expect(bin, name).toBe('node');
      expect(entry, name).toMatch(/\.ts$/);
      expect(existsSync(join(root, entry!)), `${name}: ${entry} missing`).toBe(true);
      expect(copied, `${name}: ${entry} not copied by the Dockerfile`).toContain(entry!.split('/')[0]);
    }
  });

  it('copies the dashboard (ui/, served by the enqueuer without a build step) into the image, and its chart library is a production dependency', () => {
    const copied = [...dockerfile.matchAll(/^COPY\s+(?!--from)(\S+)\s+\S+\s*$/gm)].map((m) => m[1]!);
    expect(copied).toContain('ui');
    expect(existsSync(join(root, 'ui/index.html'))).toBe(true);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).toContain('uplot');
  });

  it('publishes every port on 127.0.0.1 only, the management UI included', () => {
    const published = Object.values(services).flatMap((s) => s.ports ?? []);
    expect(published.length).toBeGreaterThan(0);
    for (const p of published) {
      if (typeof p === 'object') expect(p.host_ip).toBe('127.0.0.1');
      else expect(String(p)).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
    }
    expect(services.rabbitmq?.ports).toContain('127.0.0.1:15672:15672');
  });

  it('uses the Node major of package.json engines in every FROM of the Dockerfile', () => {
    const engines = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    const major = /^>=\s*(\d+)/.exec(engines)?.[1];
    expect(major).toBe('24');
    const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
    expect(froms.length).toBeGreaterThan(0);
    for (const image of froms) expect(image).toMatch(new RegExp(`^node:${major}(-|$)`));
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/^USER node$/m);
  });

  it('gives the enqueuer and dequeuer a valid configuration whose port the healthcheck probes on /readyz', () => {
    const configs = {
      enqueuer: loadEnqueuerConfig(gatewayEnv('enqueuer')),
      dequeuer: loadDequeuerConfig(gatewayEnv('dequeuer')),
    };
    for (const [name, cfg] of Object.entries(configs)) {
      const svc = services[name]!;
      expect(new URL(cfg.rabbitmqUrl).hostname, name).toBe('rabbitmq');
      expect(String(svc.healthcheck?.test)).toContain(`http://127.0.0.1:${cfg.port}/readyz`);
      expect(svc.ports, name).toContain(`127.0.0.1:${cfg.port}:${cfg.port}`);
    }
  });

  it('points the gateway at the demo downstream as service echo, on the port the demo listens on', () => {
    const file = parseServices(JSON.parse(readFileSync(join(root, 'config/services.compose.json'), 'utf8')), 'services.compose.json');
    const url = new URL(file.echo!.url);
    expect(url.hostname).toBe('demo');
    expect(services.demo).toBeDefined();
    expect(url.port).toBe(environment(services.demo!).DEMO_PORT);
  });

  it('lets Prometheus scrape only compose services, and loads its rules from beside its config', () => {
    const prom = parse(readFileSync(join(root, 'monitoring/prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const jobs = Object.fromEntries(prom.scrape_configs.map((c) => [c.job_name, c.static_configs.flatMap((s) => s.targets)]));
    expect(jobs).toMatchObject({ enqueuer: ['enqueuer:8080'], dequeuer: ['dequeuer:8090'], rabbitmq: ['rabbitmq:15692'] });
    for (const target of Object.values(jobs).flat()) {
      const host = target.split(':')[0]!;
      if (host !== 'localhost') expect(Object.keys(services)).toContain(host);
    }
    const mounts = repoMounts(services.prometheus!);
    for (const rules of prom.rule_files) {
      expect(mounts).toContainEqual({ source: `./monitoring/${rules}`, target: `/etc/prometheus/${rules}` });
    }
  });
});
