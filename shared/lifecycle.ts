import type { Logger } from 'pino';

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
 * exits 0 (1 on failure); a second signal exits at once. Also counts process-level errors.
 */
export function handleSignals(service: Lifecycle, logger: Logger, onUnhandled: (err: unknown) => void): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'signal received: stopping');
    service.stop().then(
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
