// The outermost interceptor (see pipeline.ts): one CLIENT span, one trace record and
// one metrics sample per call, refused calls included. It gives the call its trace
// context (the W3C headers every attempt carries) and, when the call ends, records how
// it went: status, latency, attempts, and which instance answered.
//
// Cost: without an OpenTelemetry SDK, without a MeterProvider and with the record not
// sampled, a call pays for two ids from a random pool, one header string and one
// promise reaction.
import type { Span, Tracer } from "@opentelemetry/api";
import { isMeshError } from "../errors.js";
import type { CallContext, Interceptor } from "../pipeline.js";
import type { MeshMetrics } from "../telemetry/metrics.js";
import { activeTracer, contextManaged, endSpan, hasActiveSpan, type SpanTemplate, spanTemplate, startClientSpan, unsampled } from "../telemetry/tracer.js";
import type { TraceBuffer } from "../trace/buffer.js";
import type { TraceCall } from "../trace/event.js";
import { newSpanId, newTraceId, sampledAt, type TraceContext, traceHeaderLines } from "../trace/context.js";
import { replyOrigin } from "../wire.js";

export interface TraceInterceptorOptions {
  callerName: string;
  /** Propagate trace context, make spans and trace records (false: metrics only). */
  tracing: boolean;
  /** Share of ok calls whose record is published (errors always are), 0..1. */
  sampleRate: number;
  /** A call whose parent trace is not sampled gets no span and asks the SDK nothing (see tracer.ts unsampledSpan). */
  followParentSampling: boolean;
  /**
   * A call that starts a trace is traced at `sampleRate` by the mesh's decision, and the
   * SDK is asked only for those (TraceOptions.rootSampling "mesh"); ok records are kept
   * exactly for sampled traces.
   */
  meshRootSampling: boolean;
  /** Where records go; undefined: none are published. */
  buffer: TraceBuffer | undefined;
  metrics: MeshMetrics | undefined;
}

/** Callers call few endpoints; past this many templates the cache starts over. */
const MAX_TEMPLATES = 4096;

export function createTraceInterceptor(o: TraceInterceptorOptions): Interceptor {
  const { tracing, sampleRate, buffer, metrics, callerName, followParentSampling, meshRootSampling } = o;
  // service → endpoint → span name and attributes: no strings or objects per call.
  const templates = new Map<string, Map<string, SpanTemplate>>();
  let templateCount = 0;
  const templateOf = (service: string, endpoint: string): SpanTemplate => {
    let byEndpoint = templates.get(service);
    let t = byEndpoint?.get(endpoint);
    if (t) return t;
    if (templateCount >= MAX_TEMPLATES) {
      templates.clear();
      templateCount = 0;
      byEndpoint = undefined;
    }
    if (!byEndpoint) templates.set(service, (byEndpoint = new Map()));
    byEndpoint.set(endpoint, (t = spanTemplate(service, endpoint, { "svcmesh.caller": callerName })));
    templateCount++;
    return t;
  };

  // sampled: the trace's W3C flag, which decides ok records under mesh root sampling;
  // -1 otherwise (they are sampled by trace id, the same at every hop).
  const finish = (ctx: CallContext, span: Span | undefined, t0: number, sampled: number, status: string, message: string | undefined): void => {
    const ms = performance.now() - t0;
    const { service } = ctx.target;
    metrics?.call(service, ctx.endpoint, status, ms, ctx.attempt);
    const keep = buffer !== undefined && (status !== "ok" || (sampled < 0 ? sampledAt(ctx.traceId, sampleRate) : sampled === 1));
    const recording = span !== undefined && span.isRecording();
    const origin = (keep || recording) && ctx.reply ? replyOrigin(ctx.reply) : undefined;
    if (recording) {
      span.setAttribute("svcmesh.attempts", ctx.attempt);
      if (origin?.instance) span.setAttribute("svcmesh.instance", origin.instance);
      endSpan(span, status, message);
    } else span?.end(); // a span the sampler dropped: nothing to describe
    if (keep) {
      const call: TraceCall = [ctx.startedAt, -1, ctx.requestId, ctx.traceId, ctx.spanId, Math.round(ms * 1000) / 1000, status, ctx.attempt];
      buffer.add(service, ctx.endpoint, call, origin?.instance ?? "", origin?.version ?? "");
    }
  };

  // Under mesh root sampling, a call that starts a trace (no parent given, none active)
  // and that the mesh does not keep: the id of its new, unsampled trace. The SDK is asked
  // only for the ones kept.
  const unkeptRoot = (parent: TraceContext | undefined): string | undefined => {
    if (!meshRootSampling || parent !== undefined || (contextManaged() && hasActiveSpan())) return undefined;
    const traceId = newTraceId();
    return sampledAt(traceId, sampleRate) ? undefined : traceId;
  };

  const sdkSpan = (tracer: Tracer, ctx: CallContext, parent: TraceContext | undefined): Span => {
    const template = templateOf(ctx.target.service, ctx.endpoint);
    const span = startClientSpan(tracer, template.name, parent);
    if (span.isRecording()) {
      span.setAttributes(template.attributes);
      span.setAttribute("svcmesh.request_id", ctx.requestId);
    }
    return span;
  };

  return (ctx, next) => {
    const t0 = performance.now();
    let span: Span | undefined;
    let sampled = -1;
    if (tracing) {
      const parent = ctx.parentTrace;
      const tracer = activeTracer();
      let flags: number;
      let state: string;
      if (!tracer) {
        ctx.traceId = parent?.traceId ?? newTraceId();
        ctx.spanId = newSpanId();
        // Our own sampling decision travels as the W3C "sampled" flag, so a downstream
        // service with an SDK and a parent-based sampler keeps the same traces.
        flags = parent ? parent.flags : sampledAt(ctx.traceId, sampleRate) ? 1 : 0;
        state = parent?.state ?? "";
      } else {
        // A call the SDK would only answer with a span that records nothing gets no span
        // object at all (see tracer.ts unsampledSpan): the ids are all the next hop needs.
        // At a 1% rate that is 99 calls in 100.
        const unsampledTrace = followParentSampling && unsampled(parent) ? parent.traceId : unkeptRoot(parent);
        if (unsampledTrace !== undefined) {
          ctx.traceId = unsampledTrace;
          ctx.spanId = newSpanId();
          flags = parent?.flags ?? 0;
          state = parent?.state ?? "";
        } else {
          span = sdkSpan(tracer, ctx, parent);
          const sc = span.spanContext();
          ctx.traceId = sc.traceId;
          ctx.spanId = sc.spanId;
          flags = sc.traceFlags;
          state = sc.traceState?.serialize() ?? parent?.state ?? "";
        }
      }
      ctx.traceLines = traceHeaderLines(ctx.traceId, ctx.spanId, flags, state);
      if (meshRootSampling) sampled = flags & 1;
    }
    return next(ctx).then(
      (value) => {
        finish(ctx, span, t0, sampled, "ok", undefined);
        return value;
      },
      (e: unknown) => {
        finish(ctx, span, t0, sampled, isMeshError(e) ? e.code : "UNAVAILABLE", (e as Error)?.message);
        throw e;
      },
    );
  };
}
