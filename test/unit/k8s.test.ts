import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { Deployment as DeploymentModel } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ScaledObject as ScaledObjectModel, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { ALERTS_PATH, PROMETHEUS_RULE_PATH, prometheusRuleYaml } from '../../scripts/lib/prometheus-rule.ts';
import { parseServices } from '../../shared/config/services.ts';
import { names } from '../../shared/topology/names.ts';
import { buildTopology } from '../../shared/topology/topology.ts';
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

interface LabelSelector {
  matchLabels?: Record<string, string>;
}

interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: unknown;
}

interface PolicyRule {
  from?: PolicyPeer[];
  to?: PolicyPeer[];
  ports?: Array<{ protocol?: string; port?: number | string }>;
}

interface NetworkPolicyObject extends K8sObject {
  spec: { podSelector: LabelSelector; policyTypes: string[]; ingress?: PolicyRule[]; egress?: PolicyRule[] };
}

interface Deployment extends K8sObject {
  spec: {
    replicas?: number;
    selector: LabelSelector;
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        topologySpreadConstraints?: Array<{ topologyKey: string; maxSkew: number; whenUnsatisfiable: string; labelSelector: LabelSelector }>;
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

/**
 * The Kubernetes (1.27 OpenAPI), KEDA and Prometheus Operator schemas as kubernetes-models bundles
 * them (precompiled validators, offline), by `apiVersion/kind`. A kind missing here fails the test.
 */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': DeploymentModel,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObjectModel,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

/** Schema errors of one object ('' when valid). */
function schemaErrors(o: K8sObject): string {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!Model) return `no schema for ${o.apiVersion} ${o.kind}`;
  try {
    new Model(o as never).validate();
    return '';
  } catch (err) {
    return (err as Error).message;
  }
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

/** Whether a label selector (matchLabels only, as these manifests use) selects `labels`. */
function matches(selector: LabelSelector, labels: Record<string, string>): boolean {
  return Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
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
      // The queue regex must match exactly the work lanes the topology declares for a service the
      // gateway serves, summed: no delay, rpc or DLQ queue, no lane of another service.
      expect(t.metadata).toMatchObject({ useRegex: 'true', operation: 'sum' });
      const re = new RegExp(String(t.metadata.queueName));
      const topology = buildTopology(services);
      const matched = topology.queues.map((q) => q.name).filter((q) => re.test(q));
      const service = Object.keys(services).find((s) => topology.lanes[s]!.every((lane) => matched.includes(n.workQueue(s, lane))));
      expect(service, `${t.metadata.queueName} does not match the work lanes of a configured service`).toBeDefined();
      expect(matched.sort()).toEqual(topology.lanes[service!]!.map((lane) => n.workQueue(service!, lane)).sort());
      const auth = find<K8sObject & { spec: { secretTargetRef: Array<{ parameter: string; name: string; key: string }> } }>(
        'TriggerAuthentication', t.authenticationRef.name);
      const host = auth.spec.secretTargetRef.find((r) => r.parameter === 'host');
      expect(host).toBeDefined();
      expect(secretValue(host!.name, host!.key)).toMatch(/^https?:\/\/[^/]+:15672\//);
    }
    expect(so.spec.triggers.some((t) => new RegExp(String(t.metadata.queueName)).test('gw.echo.work'))).toBe(true);
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

  it('validates every manifest against the Kubernetes, KEDA and Prometheus Operator schemas', () => {
    const kinds = new Set(objects.map((o) => o.kind));
    for (const kind of ['PodDisruptionBudget', 'NetworkPolicy', 'HorizontalPodAutoscaler', 'ServiceMonitor', 'PrometheusRule', 'ScaledObject']) {
      expect(kinds, kind).toContain(kind);
    }
    for (const o of objects) expect(schemaErrors(o), `${o.kind} ${o.metadata.name}`).toBe('');
    // The validators do reject what the API server would: a wrong type, a missing required field.
    const hpa = structuredClone(find<K8sObject & { spec: Record<string, unknown> }>('HorizontalPodAutoscaler', 'enqueuer'));
    hpa.spec.minReplicas = 'two';
    expect(schemaErrors(hpa)).toMatch(/minReplicas must be integer/);
    const rule = structuredClone(find<K8sObject & { spec: { groups: Array<Record<string, unknown>> } }>('PrometheusRule', 'rabbit-gateway'));
    delete rule.spec.groups[0]!.name;
    expect(schemaErrors(rule)).toMatch(/spec\/groups\/0 must have required property .?name/);
  });

  it('ships the PrometheusRule generated from monitoring/alerts.yml, with the same rule groups', () => {
    const source = readFileSync(join(root, ALERTS_PATH), 'utf8');
    expect(readFileSync(join(root, PROMETHEUS_RULE_PATH), 'utf8'), 'stale: run npm run prometheus-rule').toBe(prometheusRuleYaml(source));
    const rule = find<K8sObject & { spec: { groups: unknown[] } }>('PrometheusRule', 'rabbit-gateway');
    const groups = (parse(source) as { groups: Array<{ rules: unknown[] }> }).groups;
    expect(rule.spec.groups).toEqual(groups);
    expect(groups.flatMap((g) => g.rules).length).toBeGreaterThanOrEqual(15);
  });

  it('scrapes both components through ServiceMonitors whose job label is the name the alerts use', () => {
    for (const name of ['enqueuer', 'dequeuer']) {
      const sm = find<K8sObject & { spec: { selector: LabelSelector; jobLabel?: string; endpoints: Array<{ port: string; path: string }> } }>('ServiceMonitor', name);
      // No jobLabel: the Prometheus Operator names the job after the Service.
      expect(sm.spec.jobLabel).toBeUndefined();
      const svcs = objects.filter((o) => o.kind === 'Service' && matches(sm.spec.selector, (o.metadata as { labels?: Record<string, string> }).labels ?? {}));
      expect(svcs.map((o) => o.metadata.name), name).toEqual([name]);
      const svc = svcs[0] as K8sObject & { spec: { ports: Array<{ name: string; targetPort: string }> } };
      expect(svc.spec.ports.map((p) => p.name)).toContain(sm.spec.endpoints[0]?.port);
      expect(sm.spec.endpoints[0]?.path).toBe('/metrics');
    }
  });

  it('autoscales the enqueuer on CPU with at least 2 replicas, and leaves it no fixed replica count', () => {
    const hpa = find<K8sObject & { spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number; metrics: Array<{ type: string; resource?: { name: string } }> } }>(
      'HorizontalPodAutoscaler', 'enqueuer');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'enqueuer' });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.metrics.map((m) => `${m.type}/${m.resource?.name}`)).toEqual(['Resource/cpu']);
    expect(find<Deployment>('Deployment', 'enqueuer').spec.replicas).toBeUndefined();
    // CPU utilization is relative to the request: without one the HPA cannot compute it.
    expect(find<Deployment>('Deployment', 'enqueuer').spec.template.spec.containers[0]).toMatchObject({ resources: { requests: { cpu: '250m' } } });
  });

  it('gives each deployment a disruption budget and spreads its pods over zones and nodes', () => {
    for (const name of ['enqueuer', 'dequeuer']) {
      const d = find<Deployment>('Deployment', name);
      const pdb = find<K8sObject & { spec: { maxUnavailable?: number; minAvailable?: number; selector: LabelSelector } }>('PodDisruptionBudget', name);
      expect(pdb.spec.selector).toEqual(d.spec.selector);
      expect(matches(pdb.spec.selector, d.spec.template.metadata.labels)).toBe(true);
      expect(pdb.spec.maxUnavailable).toBe(1);
      const spread = d.spec.template.spec.topologySpreadConstraints ?? [];
      expect(spread.map((c) => c.topologyKey).sort(), name).toEqual(['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
      for (const c of spread) {
        expect(matches(c.labelSelector, d.spec.template.metadata.labels), `${name} ${c.topologyKey}`).toBe(true);
        expect(c.labelSelector.matchLabels?.['app.kubernetes.io/component']).toBe(name);
      }
    }
  });

  it('lets traffic reach the enqueuer from the ingress and Prometheus, the dequeuer from Prometheus only, and both out to the broker, Redis and DNS', () => {
    const policies = objects.filter((o): o is NetworkPolicyObject => o.kind === 'NetworkPolicy');
    const prometheus = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } };
    const ingressNginx = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } };
    const brokerRedisDns = [
      { to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'rabbitmq' } } }], ports: [{ protocol: 'TCP', port: 5672 }, { protocol: 'TCP', port: 5671 }] },
      { to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'redis' } } }], ports: [{ protocol: 'TCP', port: 6379 }] },
      { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
        ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }] },
    ];
    const expected: Record<string, { ingress: PolicyRule[]; egress: PolicyRule[] }> = {
      enqueuer: { ingress: [{ from: [ingressNginx, prometheus], ports: [{ protocol: 'TCP', port: 8080 }] }], egress: brokerRedisDns },
      dequeuer: {
        ingress: [{ from: [prometheus], ports: [{ protocol: 'TCP', port: 8090 }] }],
        // Calling the downstreams is the dequeuer's job: only pods labelled as downstreams.
        egress: [...brokerRedisDns, { to: [{ namespaceSelector: {}, podSelector: { matchLabels: { 'rabbit-gateway.io/downstream': 'true' } } }] }],
      },
    };
    for (const [name, want] of Object.entries(expected)) {
      const d = find<Deployment>('Deployment', name);
      const port = d.spec.template.spec.containers[0]!.ports.find((p) => p.name === 'http')!.containerPort;
      expect(want.ingress[0]!.ports![0]!.port).toBe(port);
      const applying = policies.filter((p) => matches(p.spec.podSelector, d.spec.template.metadata.labels));
      // Every policy that selects the pods restricts both directions (deny by default)...
      for (const p of applying) expect([...p.spec.policyTypes].sort(), p.metadata.name).toEqual(['Egress', 'Ingress']);
      // ...and the union of their rules is exactly the allowed traffic.
      expect(applying.flatMap((p) => p.spec.ingress ?? []), `${name} ingress`).toEqual(want.ingress);
      expect(applying.flatMap((p) => p.spec.egress ?? []), `${name} egress`).toEqual(want.egress);
    }
    expect(policies.find((p) => p.metadata.name === 'rabbit-gateway-default-deny')?.spec).toEqual({
      podSelector: { matchLabels: { 'app.kubernetes.io/name': 'rabbit-gateway' } }, policyTypes: ['Ingress', 'Egress'] });
  });

  it('names in deploy/README.md the broker users the Secrets log in as, each defined in rabbitmq/definitions.json', () => {
    const readme = readFileSync(join(root, 'deploy/README.md'), 'utf8');
    const users = (JSON.parse(readFileSync(join(root, 'rabbitmq/definitions.json'), 'utf8')) as { users: Array<{ name: string; tags: string[] | string }> }).users;
    const secretUsers = objects.filter((o) => o.kind === 'Secret')
      .flatMap((o) => Object.values((o as K8sObject & { stringData: Record<string, string> }).stringData))
      .filter((v) => /^(amqps?|https?):\/\/[^:]+:/.test(v)).map((v) => decodeURIComponent(new URL(v).username));
    expect([...new Set(secretUsers)].sort()).toEqual(['gw-dequeuer', 'gw-enqueuer', 'gw-monitor']);
    for (const user of secretUsers) {
      expect(users.map((u) => u.name), user).toContain(user);
      expect(readme, `deploy/README.md does not name ${user}`).toContain(`\`${user}\``);
    }
    expect(readme).toMatch(/RabbitMQ Cluster Operator/);
    expect(readme).toMatch(/Redis/);
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
