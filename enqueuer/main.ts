import { handleSignals } from '../shared/lifecycle.ts';
import { createLogger } from '../shared/logger.ts';
import { startTracing } from '../shared/otel.ts';
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
// Spans leave the process only with OTEL_EXPORTER_OTLP_ENDPOINT (the SDK is loaded only then).
const tracing = await startTracing({ endpoint: config.otlpEndpoint, serviceName: config.otelServiceName ?? 'enqueuer', logger });
// A broker that lacks what the topology needs (GW_ERR_BROKER_INCAPABLE) is not retried: exit 78
// (EX_CONFIG) with the reason, so an orchestrator shows it instead of a pod that never gets ready.
const enqueuer: Enqueuer = new Enqueuer(config, {
  logger,
  onFatal: (err) => {
    process.stderr.write(`enqueuer: refusing to start: ${err.message}\n`);
    void enqueuer.stop().finally(() => process.exit(78));
  },
});
handleSignals(enqueuer, logger, () => enqueuer.metrics.unhandledErrors.inc(), async () => {
  await tracing?.shutdown();
});
await enqueuer.start();
