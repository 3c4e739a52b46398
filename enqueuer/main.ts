import { handleSignals } from '../shared/lifecycle.ts';
import { createLogger } from '../shared/logger.ts';
import { loadEnqueuerConfig } from './config.ts';
import { Enqueuer } from './enqueuer.ts';

// The only file that reads process.env, installs signal handlers and exits.
let config;
try {
  config = loadEnqueuerConfig(process.env);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}
const logger = createLogger({ level: config.logLevel, logBodies: config.logBodies, base: { app: 'enqueuer' } });
const enqueuer = new Enqueuer(config, { logger });
handleSignals(enqueuer, logger, () => enqueuer.metrics.unhandledErrors.inc());
await enqueuer.start();
