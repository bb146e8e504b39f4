// OpenTelemetry tracing, through @opentelemetry/api only: whatever SDK the user
// registers receives the spans. With none registered the global provider is the API's
// no-op, and the mesh skips span work entirely (one identity check per call).
import {
  type Attributes,
  type Context,
  context,
  createContextKey,
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
import { newSpanId, type TraceContext } from "../trace/context.js";

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
    probeCountdown = 0; // an SDK being registered often comes with a context manager
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

/** A span's name (`<service>/<endpoint>`) and the attributes it gets when recorded, made once per endpoint. */
export interface SpanTemplate {
  readonly name: string;
  readonly attributes: Attributes;
}

export function spanTemplate(service: string, endpoint: string, extra: Attributes): SpanTemplate {
  return { name: `${service}/${endpoint}`, attributes: { ...rpcAttributes(service, endpoint), ...extra } };
}

export function startClientSpan(tracer: Tracer, name: string, parent: TraceContext | undefined): Span {
  return tracer.startSpan(name, CLIENT_OPTIONS, parentContextOf(parent));
}

export function startServerSpan(tracer: Tracer, name: string, parent: TraceContext | undefined): Span {
  // A request without a (valid) traceparent starts a new trace: never the context of
  // whatever happened to be active when the message arrived.
  const ctx = parent ? parentContextOf(parent) : ROOT_CONTEXT;
  return tracer.startSpan(name, SERVER_OPTIONS, ctx);
}

/**
 * The span of a hop whose parent trace is not sampled, made without the SDK. Under a
 * parent-based sampler (the SDK's default) the SDK would answer with exactly this: a
 * span that records nothing, in the parent's trace, with a new span id. Meshes such as
 * Istio work the same way: the first hop decides and every later hop follows. Skipping
 * the sampler, the id generator and a context per hop matters because at a 1% rate 99
 * of 100 hops are like this. `connect({ trace: { followParentSampling: false } })`
 * asks the SDK's sampler at every hop instead. The trace state stays with the caller
 * of this (traceContextOfSpan's fallback), so no TraceState is parsed here.
 */
export function unsampledSpan(parent: Pick<TraceContext, "traceId" | "flags">): Span {
  return trace.wrapSpanContext({ traceId: parent.traceId, spanId: newSpanId(), traceFlags: parent.flags });
}

/** Whether a span is active in the current OpenTelemetry context (a call made under it continues its trace). */
export function hasActiveSpan(): boolean {
  return trace.getSpanContext(context.active()) !== undefined;
}

/** Whether a parent trace context says "not sampled" (W3C flag bit 0). */
export function unsampled(parent: TraceContext | undefined): parent is TraceContext {
  return parent !== undefined && (parent.flags & 1) === 0;
}

/**
 * Ends a span with the call's outcome: a success leaves the status unset, as the
 * OpenTelemetry spec asks of instrumentation libraries (OK is final, and is for the
 * application to set); a failure is ERROR with the mesh error code as `error.type`.
 */
export function endSpan(span: Span, status: string, message: string | undefined): void {
  if (status !== "ok") {
    span.setAttribute("error.type", status);
    span.setAttribute("svcmesh.error_code", status);
    span.setStatus({ code: SpanStatusCode.ERROR, ...(message ? { message } : {}) });
  }
  span.end();
}

// Without a registered context manager, context.with() runs the function in the root
// context anyway: making a context for the span would be wasted on every request. A
// manager can be registered at any time, so this is looked at again now and then.
const PROBE = ROOT_CONTEXT.setValue(createContextKey("svcmesh context probe"), true);
const PROBE_EVERY = 1024;
let probeCountdown = 0;
let managed = false;

/** Whether a context manager is registered (so context.with() means something). */
export function contextManaged(): boolean {
  if (probeCountdown-- <= 0) {
    probeCountdown = PROBE_EVERY;
    managed = context.with(PROBE, () => context.active() === PROBE);
  }
  return managed;
}

/** Runs `fn` with `span` as the active span (so the user's own spans nest under it). */
export function withSpan<T>(span: Span, fn: () => T): T {
  return contextManaged() ? context.with(trace.setSpan(context.active(), span), fn) : fn();
}

/** Span attributes per the OpenTelemetry RPC and messaging conventions. */
function rpcAttributes(service: string, endpoint: string): Attributes {
  return { "rpc.system": "nats", "messaging.system": "nats", "rpc.service": service, "rpc.method": endpoint };
}
