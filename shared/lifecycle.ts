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
