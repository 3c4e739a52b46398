import { trace } from '@opentelemetry/api';
import type { Logger } from 'pino';

/** A registered OpenTelemetry SDK: flushes and stops exporting on `shutdown`. */
export interface Tracing {
  /** Where spans go (`<endpoint>/v1/traces`). */
  readonly url: string;
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  /** OTLP/HTTP base endpoint (OTEL_EXPORTER_OTLP_ENDPOINT), e.g. http://otel-collector:4318; unset = off. */
  endpoint: string | undefined;
  /** `service.name` of the spans (OTEL_SERVICE_NAME, else the role). */
  serviceName: string;
  logger: Logger;
  /** Longest a span waits in the batch before export (ms). @default 1000 */
  exportDelayMs?: number;
}

/**
 * Registers the OpenTelemetry SDK (tracer provider + batch span processor + OTLP/HTTP JSON exporter)
 * as the global tracer provider when `endpoint` is set; shared/tracing.ts's spans then become real
 * and leave the process. Off by default, and free when off: the SDK modules are imported only here,
 * on demand, so a process without an endpoint never loads them.
 */
export async function startTracing(opts: TracingOptions): Promise<Tracing | undefined> {
  if (!opts.endpoint) return undefined;
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  // The signal path is appended to the base endpoint, as the OTLP exporter spec says for
  // OTEL_EXPORTER_OTLP_ENDPOINT (an explicit `url` is used as given).
  const url = `${opts.endpoint.replace(/\/+$/, '')}/v1/traces`;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': opts.serviceName }),
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url }), scheduledDelayMillis: opts.exportDelayMs ?? 1_000 })],
  });
  if (!trace.setGlobalTracerProvider(provider)) {
    await provider.shutdown();
    throw new Error('an OpenTelemetry tracer provider is already registered in this process');
  }
  opts.logger.info({ url, serviceName: opts.serviceName }, 'exporting spans over OTLP/HTTP');
  return {
    url,
    async shutdown() {
      await provider.shutdown().catch((err: unknown) => opts.logger.warn({ err }, 'span export at shutdown failed'));
      trace.disable();
    },
  };
}
