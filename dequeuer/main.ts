import { handleSignals } from '../shared/lifecycle.ts';
import { createLogger } from '../shared/logger.ts';
import { startTracing } from '../shared/otel.ts';
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
// Spans leave the process only with OTEL_EXPORTER_OTLP_ENDPOINT (the SDK is loaded only then).
const tracing = await startTracing({ endpoint: config.otlpEndpoint, serviceName: config.otelServiceName ?? 'dequeuer', logger });
// A broker that lacks what the topology needs (GW_ERR_BROKER_INCAPABLE) is not retried: exit 78
// (EX_CONFIG) with the reason, so an orchestrator shows it instead of a pod that never gets ready.
const dequeuer: Dequeuer = new Dequeuer(config, {
  logger,
  onFatal: (err) => {
    process.stderr.write(`dequeuer: refusing to start: ${err.message}\n`);
    void dequeuer.stop().finally(() => process.exit(78));
  },
});
handleSignals(dequeuer, logger, () => dequeuer.metrics.unhandledErrors.inc(), async () => {
  await tracing?.shutdown();
});
await dequeuer.start();
