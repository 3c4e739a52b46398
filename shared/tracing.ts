import { randomFillSync } from 'node:crypto';
import { INVALID_SPAN_CONTEXT, isSpanContextValid, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Span, type SpanContext } from '@opentelemetry/api';

/**
 * W3C trace context through the OpenTelemetry API only. With an SDK registered (a user's choice),
 * spans are real and exported; without one, the API's no-op tracer returns non-recording spans
 * and this module still produces valid `traceparent` values (same trace id, a fresh span id per
 * hop), so trace ids reach logs and downstreams without any SDK.
 */
const TRACER_NAME = 'rabbit-gateway';
const tracer = trace.getTracer(TRACER_NAME);

/**
 * The API's global provider: a proxy that gets a delegate once an SDK registers (shared/otel.ts).
 * Until then every span is the API's no-op, so {@link startHop} skips the tracer (context, span and
 * id validation objects per hop: ~1% of each service's CPU in the sync bench, docs/adr/1402).
 */
const provider = trace.getTracerProvider() as { getDelegateTracer?: (name: string) => unknown };
let sdkSeen = false;
function sdkRegistered(): boolean {
  if (!sdkSeen) sdkSeen = typeof provider.getDelegateTracer !== 'function' || provider.getDelegateTracer(TRACER_NAME) !== undefined;
  return sdkSeen;
}
/** The span of every hop while no SDK is registered: non-recording, its end and status are no-ops. */
const NOOP_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * Random ids come from a pool refilled 8 KiB at a time (as Node does for `randomUUID`): one
 * `randomBytes` per hop was 2–3% of each service's CPU in the sync benchmark's profiles.
 */
const pool = Buffer.alloc(8192);
let poolOffset = pool.length;

/** `bytes` cryptographically random bytes as lowercase hex. */
export function randomHex(bytes: number): string {
  if (poolOffset + bytes > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const hex = pool.toString('hex', poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return hex;
}

const TRACEPARENT = /^00-((?!0{32})[0-9a-f]{32})-((?!0{16})[0-9a-f]{16})-([0-9a-f]{2})$/;

/** The span context of a version-00 `traceparent`, or undefined when malformed. */
export function parseTraceparent(value: string | undefined): SpanContext | undefined {
  if (value === undefined) return undefined;
  const m = TRACEPARENT.exec(value);
  if (!m) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true };
}

export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** One hop of a trace: the (possibly non-recording) span and the context to propagate. */
export interface TraceHop {
  span: Span;
  /** `traceparent` naming this hop as parent (for the AMQP header or the downstream call). */
  traceparent: string;
  traceId: string;
}

export { SpanKind };

/**
 * Starts a span as a child of `parent` (a `traceparent`), or a new trace without one. When no SDK
 * is registered the no-op span carries the parent's ids (or none), so this hop's ids are made here:
 * the parent's trace id (or a random one) and a random span id; a trace started here is flagged
 * sampled so downstreams with parent-based sampling record their part.
 */
export function startHop(name: string, kind: SpanKind, parent: string | undefined, attributes?: Record<string, string | number>): TraceHop {
  const parentSc = parseTraceparent(parent);
  if (!sdkRegistered()) {
    const ids = randomHex(parentSc ? 8 : 24);
    const sc = parentSc ? { ...parentSc, spanId: ids } : { traceId: ids.slice(0, 32), spanId: ids.slice(32), traceFlags: TraceFlags.SAMPLED };
    return { span: NOOP_SPAN, traceparent: formatTraceparent(sc), traceId: sc.traceId };
  }
  const ctx = parentSc ? trace.setSpanContext(ROOT_CONTEXT, parentSc) : ROOT_CONTEXT;
  const span = tracer.startSpan(name, attributes ? { kind, attributes } : { kind }, ctx);
  let sc = span.spanContext();
  if (!isSpanContextValid(sc) || (parentSc !== undefined && sc.spanId === parentSc.spanId)) {
    const ids = randomHex(24);
    sc = { traceId: parentSc?.traceId ?? ids.slice(0, 32), spanId: ids.slice(32), traceFlags: parentSc?.traceFlags ?? TraceFlags.SAMPLED, isRemote: false };
  }
  return { span, traceparent: formatTraceparent(sc), traceId: sc.traceId };
}

/** Ends a hop's span, with an error status when `error` is given. */
export function endHop(hop: TraceHop, error?: string): void {
  if (error !== undefined) hop.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  hop.span.end();
}

/** The trace id of a `traceparent` (for log lines), or undefined. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return parseTraceparent(traceparent)?.traceId;
}
