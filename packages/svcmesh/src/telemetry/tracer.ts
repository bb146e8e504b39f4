// OpenTelemetry tracing, through @opentelemetry/api only: whatever SDK the user
// registers receives the spans. With none registered the global provider is the API's
// no-op, and the mesh skips span work entirely (one identity check per call).
import {
  type Attributes,
  type Context,
  context,
  createTraceState,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import type { TraceContext } from "../trace/context.js";

export const INSTRUMENTATION_NAME = "svcmesh";

const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();
let lastDelegate: TracerProvider | undefined;
let lastTracer: Tracer | undefined;

/** The tracer of the registered SDK, or undefined when no SDK is registered. */
export function activeTracer(): Tracer | undefined {
  const provider = trace.getTracerProvider();
  const delegate = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider;
  if (delegate !== lastDelegate) {
    lastDelegate = delegate;
    // Another copy of the API has its own no-op class: recognise it by name as well.
    const noop = delegate === NOOP_PROVIDER || delegate.constructor?.name === "NoopTracerProvider";
    lastTracer = noop ? undefined : delegate.getTracer(INSTRUMENTATION_NAME);
  }
  return lastTracer;
}

/** The OpenTelemetry context a span starts in: an explicit parent, else the active context. */
export function parentContextOf(parent: TraceContext | undefined): Context {
  if (!parent) return context.active();
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: parent.traceId,
    spanId: parent.spanId,
    traceFlags: parent.flags,
    isRemote: true,
    ...(parent.state ? { traceState: createTraceState(parent.state) } : {}),
  });
}

/** The trace context a span hands to the next hop. */
export function traceContextOfSpan(span: Span, fallbackState: string): TraceContext {
  const sc = span.spanContext();
  return { traceId: sc.traceId, spanId: sc.spanId, flags: sc.traceFlags, state: sc.traceState?.serialize() ?? fallbackState };
}

// Spans start without attributes: callers add them only when span.isRecording(), so a
// span the sampler drops costs no attribute objects.
const CLIENT_OPTIONS = { kind: SpanKind.CLIENT } as const;
const SERVER_OPTIONS = { kind: SpanKind.SERVER } as const;

export function startClientSpan(tracer: Tracer, service: string, endpoint: string, parent: TraceContext | undefined): Span {
  return tracer.startSpan(`${service}/${endpoint}`, CLIENT_OPTIONS, parentContextOf(parent));
}

export function startServerSpan(tracer: Tracer, service: string, endpoint: string, parent: TraceContext | undefined): Span {
  // A request without a (valid) traceparent starts a new trace: never the context of
  // whatever happened to be active when the message arrived.
  const ctx = parent ? parentContextOf(parent) : ROOT_CONTEXT;
  return tracer.startSpan(`${service}/${endpoint}`, SERVER_OPTIONS, ctx);
}

/** Ends a span with the call's outcome: OK, or ERROR with the mesh error code as `error.type`. */
export function endSpan(span: Span, status: string, message: string | undefined, extra?: Attributes): void {
  if (extra) span.setAttributes(extra);
  if (status === "ok") span.setStatus({ code: SpanStatusCode.OK });
  else {
    span.setAttribute("error.type", status);
    span.setAttribute("svcmesh.error_code", status);
    span.setStatus({ code: SpanStatusCode.ERROR, ...(message ? { message } : {}) });
  }
  span.end();
}

/** Runs `fn` with `span` as the active span (so the user's own spans nest under it). */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Span attributes per the OpenTelemetry RPC and messaging conventions. */
export function rpcAttributes(service: string, endpoint: string, subject?: string): Attributes {
  return {
    "rpc.system": "nats",
    "messaging.system": "nats",
    "rpc.service": service,
    "rpc.method": endpoint,
    ...(subject ? { "messaging.destination.name": subject } : {}),
  };
}
