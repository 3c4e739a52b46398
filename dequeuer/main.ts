import { handleSignals } from '../shared/lifecycle.ts';
import { createLogger } from '../shared/logger.ts';
import { loadDequeuerConfig } from './config.ts';
import { Dequeuer } from './dequeuer.ts';

// The only file that reads process.env, installs signal handlers and exits.
let config;
try {
  config = loadDequeuerConfig(process.env);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}
const logger = createLogger({ level: config.logLevel, logBodies: config.logBodies, base: { app: 'dequeuer' } });
const dequeuer = new Dequeuer(config, { logger });
handleSignals(dequeuer, logger, () => dequeuer.metrics.unhandledErrors.inc());
await dequeuer.start();
