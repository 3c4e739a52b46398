import type { Logger } from 'pino';
import type { BrokerSettings } from './config/env.ts';
import { isGatewayError } from './errors.ts';
import { createLogger } from './logger.ts';
import { startTracing } from './otel.ts';

/** States of a service object; every transition is logged. */
export type State = 'idle' | 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

/** A long-lived service object: constructors do no I/O, `start()` does, `stop()` is idempotent. */
export interface Lifecycle {
  readonly state: State;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Installs SIGTERM/SIGINT handling for `main.ts`: the first signal stops the service gracefully and
 * exits 0 (1 on failure). Later signals are logged and do not cut the drain short (a terminal's
 * Ctrl-C and a supervisor's SIGTERM often arrive together); the stop is bounded by its own drain
 * delay and grace, and SIGKILL remains for a hard stop. Also counts process-level errors.
 */
export function handleSignals(service: Lifecycle, logger: Logger, onUnhandled: (err: unknown) => void, afterStop?: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'already stopping: the drain continues (SIGKILL stops at once)');
      return;
    }
    stopping = true;
    logger.info({ signal }, 'signal received: stopping');
    service.stop().then(async () => {
      await afterStop?.();
    }).then(
      () => {
        logger.info('stopped');
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('unhandledRejection', (err) => {
    onUnhandled(err);
    logger.error({ err }, 'unhandled rejection');
  });
  process.on('uncaughtException', (err) => {
    onUnhandled(err);
    logger.fatal({ err }, 'uncaught exception');
    logger.flush();
    process.exit(1);
  });
}

/** What {@link runMain} needs of a service object. */
export interface MainService extends Lifecycle {
  readonly metrics: { unhandledErrors: { inc(): void } };
}

/**
 * The whole of a service's `main.ts`, the only code that reads process.env, installs signal handlers
 * and exits: loads the config (exit 2 on an invalid one), creates the logger, starts span export
 * (only with OTEL_EXPORTER_OTLP_ENDPOINT; the SDK is loaded only then), creates and starts the
 * service. A broker that lacks what the topology needs (GW_ERR_BROKER_INCAPABLE), or a dequeuer whose
 * services can outlast the broker's consumer timeout (GW_ERR_CONSUMER_TIMEOUT_UNSAFE), is not retried:
 * exit 78 (EX_CONFIG) with the code and the reason, so an orchestrator shows it instead of a pod that never gets ready.
 */
export async function runMain<C extends BrokerSettings, S extends MainService>(opts: {
  app: string;
  load: (env: NodeJS.ProcessEnv) => C;
  create: (config: C, options: { logger: Logger; onFatal: (err: Error) => void }) => S;
}): Promise<S> {
  let config: C;
  try {
    config = opts.load(process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ level: config.logLevel, logBodies: config.logBodies, base: { app: opts.app } });
  const tracing = await startTracing({ endpoint: config.otlpEndpoint, serviceName: config.otelServiceName ?? opts.app, logger });
  const service: S = opts.create(config, {
    logger,
    onFatal: (err) => {
      process.stderr.write(`${opts.app}: refusing to start: ${isGatewayError(err) ? `${err.code}: ` : ''}${err.message}\n`);
      void service.stop().finally(() => process.exit(78));
    },
  });
  handleSignals(service, logger, () => service.metrics.unhandledErrors.inc(), async () => {
    await tracing?.shutdown();
  });
  await service.start();
  return service;
}
