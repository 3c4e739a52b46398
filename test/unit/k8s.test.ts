import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';
import { beforeEach, describe, expect, it } from 'vitest';
import { parseServices } from '../../shared/config/services.ts';
import { names } from '../../shared/topology/names.ts';
import { loadDequeuerConfig } from '../../dequeuer/config.ts';
import { loadEnqueuerConfig } from '../../enqueuer/config.ts';

/** Loose view of a Kubernetes object: these tests read only a few fields and assert the rest. */
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}

interface Container {
  name: string;
  command: string[];
  env: EnvVar[];
  ports: Array<{ name: string; containerPort: number }>;
  volumeMounts: Array<{ name: string; mountPath: string }>;
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
}

interface Deployment extends K8sObject {
  spec: {
    replicas?: number;
    template: {
      spec: {
        terminationGracePeriodSeconds: number;
        containers: Container[];
        volumes: Array<{ name: string; configMap?: { name: string } }>;
      };
    };
  };
}

interface RabbitTrigger {
  type: string;
  metadata: Record<string, string>;
  authenticationRef: { name: string };
}

interface ScaledObject extends K8sObject {
  spec: {
    scaleTargetRef: { name: string; kind?: string };
    minReplicaCount: number;
    cooldownPeriod: number;
    advanced?: { horizontalPodAutoscalerConfig?: { behavior?: { scaleDown?: { stabilizationWindowSeconds?: number } } } };
    triggers: RabbitTrigger[];
  };
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const dir = join(root, 'deploy/k8s');
const manifestFiles = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();

function loadManifests(): K8sObject[] {
  return manifestFiles.flatMap((file) => {
    const docs = parseAllDocuments(readFileSync(join(dir, file), 'utf8'));
    return docs.map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      return doc.toJS() as K8sObject;
    });
  });
}

const objects = loadManifests();
const find = <T extends K8sObject>(kind: string, name: string): T => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return o as T;
};
const secretValue = (name: string, key: string): string => {
  const data = (find<K8sObject & { stringData?: Record<string, string> }>('Secret', name).stringData ?? {})[key];
  if (data === undefined) throw new Error(`Secret ${name} has no key ${key}`);
  return data;
};
const servicesJson = (find<K8sObject & { data: Record<string, string> }>('ConfigMap', 'gateway-services').data)['services.json']!;
const services = parseServices(JSON.parse(servicesJson), 'gateway-services ConfigMap');

/** The container's environment as the process sees it, services read from the ConfigMap. */
function processEnv(c: Container): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const e of c.env) {
    const ref = e.valueFrom?.secretKeyRef;
    env[e.name] = ref ? secretValue(ref.name, ref.key) : e.value;
  }
  env.SERVICES_JSON = servicesJson;
  return env;
}

function preStopSeconds(c: Container): number {
  const p = c.lifecycle?.preStop;
  if (p?.sleep) return p.sleep.seconds;
  const cmd = p?.exec?.command ?? [];
  return cmd[0] === 'sleep' ? Number(cmd[1]) : 0;
}

const gateway = {
  enqueuer: { load: loadEnqueuerConfig, entry: 'enqueuer/main.ts' },
  dequeuer: { load: loadDequeuerConfig, entry: 'dequeuer/main.ts' },
} as const;

describe('Kubernetes manifests (deploy/k8s)', () => {
  beforeEach(() => {
    expect.hasAssertions();
  });

  it('parse, name their kind and apiVersion, and set no namespace', () => {
    expect(objects.length).toBeGreaterThanOrEqual(8);
    for (const o of objects) {
      expect(o.apiVersion, JSON.stringify(o.metadata)).toMatch(/^[a-z0-9.]+(\/v[0-9a-z]+)?$|^v1$/);
      expect(o.kind).toMatch(/^[A-Z][A-Za-z]+$/);
      expect(o.metadata.name).toMatch(/^[a-z0-9-]+$/);
      expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBeUndefined();
    }
  });

  it('lists exactly the manifest files in kustomization.yaml', () => {
    const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[]; namespace?: string };
    expect([...k.resources].sort()).toEqual(manifestFiles);
    expect(k.namespace).toBeUndefined();
  });

  it('scales the dequeuer with KEDA on a work queue of a configured service, counting unacked messages via the management API', () => {
    const so = find<ScaledObject>('ScaledObject', 'dequeuer');
    expect(so.apiVersion).toBe('keda.sh/v1alpha1');
    expect(so.spec.scaleTargetRef.kind ?? 'Deployment').toBe('Deployment');
    find<Deployment>('Deployment', so.spec.scaleTargetRef.name);
    expect(so.spec.triggers.length).toBeGreaterThan(0);
    const n = names('gw');
    for (const t of so.spec.triggers) {
      expect(t.type).toBe('rabbitmq');
      expect(t.metadata).toMatchObject({ protocol: 'http', mode: 'QueueLength', excludeUnacknowledged: 'false' });
      expect(Number(t.metadata.value)).toBeGreaterThan(0);
      // The queue must be the work queue the topology declares for a service the gateway serves.
      const service = Object.keys(services).find((s) => n.workQueue(s) === t.metadata.queueName);
      expect(service, `${t.metadata.queueName} is not gw.<service>.work of a configured service`).toBeDefined();
      const auth = find<K8sObject & { spec: { secretTargetRef: Array<{ parameter: string; name: string; key: string }> } }>(
        'TriggerAuthentication', t.authenticationRef.name);
      const host = auth.spec.secretTargetRef.find((r) => r.parameter === 'host');
      expect(host).toBeDefined();
      expect(secretValue(host!.name, host!.key)).toMatch(/^https?:\/\/[^/]+:15672\//);
    }
    expect(so.spec.triggers.map((t) => t.metadata.queueName)).toContain('gw.echo.work');
  });

  it('keeps a dequeuer running and waits at least the longest downstream timeout before scaling down', () => {
    const so = find<ScaledObject>('ScaledObject', 'dequeuer');
    const longestJobS = Math.max(...Object.values(services).map((s) => s.timeoutMs)) / 1000;
    expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    expect(so.spec.cooldownPeriod).toBeGreaterThanOrEqual(longestJobS);
    const window = so.spec.advanced?.horizontalPodAutoscalerConfig?.behavior?.scaleDown?.stabilizationWindowSeconds;
    expect(window).toBeGreaterThanOrEqual(longestJobS);
    // KEDA owns the replica count; a fixed one would fight the HPA on every apply.
    expect(find<Deployment>('Deployment', 'dequeuer').spec.replicas).toBeUndefined();
  });

  it('runs each deployment with a valid configuration, its entry file, probes on its port and a grace period longer than its drain', () => {
    for (const [name, { load, entry }] of Object.entries(gateway)) {
      const d = find<Deployment>('Deployment', name);
      const pod = d.spec.template.spec;
      const c = pod.containers[0]!;
      const cfg = load(processEnv(c));
      expect(c.command).toEqual(['node', entry]);
      expect(existsSync(join(root, entry))).toBe(true);
      expect(c.ports.find((p) => p.name === 'http')?.containerPort, name).toBe(cfg.port);
      expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
      expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(new URL(cfg.rabbitmqUrl).protocol).toMatch(/^amqps?:$/);
      expect(pod.terminationGracePeriodSeconds, name).toBeGreaterThan(preStopSeconds(c) + cfg.shutdownGraceMs / 1000);
      // The services file is the ConfigMap, mounted where SERVICES_FILE points.
      const file = processEnv(c).SERVICES_FILE!;
      const mount = c.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
      expect(pod.volumes.find((v) => v.name === mount?.name)?.configMap?.name, name).toBe('gateway-services');
      expect(file.slice(mount!.mountPath.length + 1)).toBe('services.json');
    }
  });

  it('sleeps in the enqueuer preStop hook so endpoints drop it before SIGTERM, and exposes it through a Service', () => {
    const c = find<Deployment>('Deployment', 'enqueuer').spec.template.spec.containers[0]!;
    expect(preStopSeconds(c)).toBeGreaterThanOrEqual(3);
    const svc = find<K8sObject & { spec: { ports: Array<{ targetPort: string | number }> } }>('Service', 'enqueuer');
    expect(svc.spec.ports[0]?.targetPort).toBe('http');
  });

  it('ships only placeholder credentials', () => {
    for (const s of objects.filter((o) => o.kind === 'Secret')) {
      for (const [key, value] of Object.entries((s as K8sObject & { stringData: Record<string, string> }).stringData)) {
        const password = URL.canParse(value) ? new URL(value).password : '';
        if (password) expect(password, `${s.metadata.name}.${key}`).toBe('CHANGE_ME');
      }
      expect((s as K8sObject & { data?: unknown }).data, 'base64 `data` would hide what is committed').toBeUndefined();
    }
  });
});
