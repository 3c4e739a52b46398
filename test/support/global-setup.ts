import { execFile } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { redactUrl } from '../../scripts/lib/find-broker.ts';
import { startPrivateNode } from '../../scripts/lib/rabbit-node.ts';

/** Docker image used when a Docker engine answers and RABBITMQ_URL is not set. */
export const RABBITMQ_IMAGE = 'rabbitmq:4-management';

interface TestBroker {
  url: string;
  managementUrl: string;
  describe: string;
  teardown: () => Promise<void>;
}

/**
 * Vitest global setup: finds or starts the broker once per run and provides its URLs.
 * Order: RABBITMQ_URL (no probing) → testcontainers when a Docker engine answers → a private
 * RabbitMQ node. Runs with only the unit project selected skip the broker entirely.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const needsBroker = project.vitest.projects.some((p) => p.name !== 'unit');
  if (!needsBroker) {
    project.provide('rabbitmqUrl', '');
    project.provide('rabbitmqManagementUrl', '');
    return async () => undefined;
  }
  const startedAtMs = Date.now();
  const broker = await findTestBroker(process.env);
  process.stderr.write(`[global-setup] broker: ${broker.describe} at ${redactUrl(broker.url)} ` +
    `(${Date.now() - startedAtMs} ms)\n`);
  project.provide('rabbitmqUrl', broker.url);
  project.provide('rabbitmqManagementUrl', broker.managementUrl);
  return broker.teardown;
}

async function findTestBroker(env: NodeJS.ProcessEnv): Promise<TestBroker> {
  if (env.RABBITMQ_URL) {
    return {
      url: env.RABBITMQ_URL,
      managementUrl: env.RABBITMQ_MANAGEMENT_URL ?? '',
      describe: 'RABBITMQ_URL',
      teardown: async () => undefined,
    };
  }
  if (await dockerAnswers(3_000)) return startContainer();
  try {
    const node = await startPrivateNode({ plugins: ['rabbitmq_management'], startTimeoutMs: 60_000 });
    return {
      url: node.url,
      managementUrl: node.managementUrl ?? '',
      describe: `private node ${node.nodeName} (pid ${node.pid}, dir ${node.dir})`,
      teardown: () => node.destroy(),
    };
  } catch (err) {
    throw new Error('Could not start a private RabbitMQ node for the tests, and no Docker engine answered. ' +
      'Set RABBITMQ_URL (and RABBITMQ_MANAGEMENT_URL) to a running broker, e.g. ' +
      `RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672.\nCause: ${(err as Error).message}`, { cause: err });
  }
}

async function startContainer(): Promise<TestBroker> {
  // Loaded only here: importing testcontainers costs time the common paths should not pay.
  const { GenericContainer, Wait } = await import('testcontainers');
  const container = await new GenericContainer(RABBITMQ_IMAGE)
    .withExposedPorts(5672, 15672)
    .withWaitStrategy(Wait.forLogMessage(/Server startup complete/))
    .withStartupTimeout(120_000)
    .start();
  const host = container.getHost();
  return {
    url: `amqp://guest:guest@${host}:${container.getMappedPort(5672)}`,
    managementUrl: `http://guest:guest@${host}:${container.getMappedPort(15672)}`,
    describe: `container ${RABBITMQ_IMAGE} ${container.getId().slice(0, 12)}`,
    teardown: async () => {
      await container.stop();
    },
  };
}

/** True when `docker info` succeeds within `timeoutMs` (the client alone is not enough). */
function dockerAnswers(timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: timeoutMs }, (err, stdout) => {
      resolve(!err && stdout.trim().length > 0);
    });
  });
}
