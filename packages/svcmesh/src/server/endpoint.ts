// One request through the callee's pipeline: read headers → deadline → authenticate and
// authorize → per-caller rate limit → bulkhead → decode → validate input → handler →
// validate output → reply (naming the instance) → span, metrics, audit record.
// Every failure becomes an error reply; nothing a caller sends can take the instance
// down. The cheap rejections (deadline, rate limit, bulkhead) come before the body is
// decoded, and none of them runs the handler.
import type { Span, Tracer } from "@opentelemetry/api";
import type { Msg } from "nats";
import { type AuditRecordCall, AuditRecordEncoder } from "../audit/record.js";
import { MeshError, isMeshError } from "../errors.js";
import { isErrorCode } from "../codes.js";
import { type Schema, describeIssues, schemaOrAny, summarizeIssues } from "../schema.js";
import { activeTracer, contextManaged, endSpan, type SpanTemplate, spanTemplate, startServerSpan, unsampledSpan, withSpan } from "../telemetry/tracer.js";
import { notSampled, parseTraceparent, traceIdOf } from "../trace/context.js";
import { type Frame, hpubFrame } from "../frames.js";
import { ErrorReplyHeaders, asNatsHeaders, decodeBody, encodeBodyShared, errorReplyBody, readRequestMeta, type RequestMeta } from "../wire.js";
import { abortedAtDeadline, HandlerContext, releaseSignal, type InstanceScope, type RejectionType } from "./context.js";
import type { HandlerSlot } from "./overdue.js";

export type Handler = (input: any, ctx: HandlerContext) => unknown;

export interface EndpointRuntime {
  name: string;
  input: Schema;
  output: Schema;
  checkOutput: boolean;
  handler: Handler;
  /** Bulkhead: most requests in the handler at once on this instance; Infinity = no cap. */
  maxConcurrent: number;
  /** Requests of this endpoint admitted and not yet answered. */
  inFlight: number;
  /** Of those, the ones whose handler runs well past its deadline (overdue.ts). */
  overdue: number;
  /** Its SERVER spans' name and attributes, made once per subject served. */
  spanTemplate?: SpanTemplate & { subject: string };
  /** Encodes its audit records, made on the first one. */
  auditEncoder?: AuditRecordEncoder;
}

export function endpointRuntime(name: string, input: Schema | undefined, output: Schema | undefined, handler: Handler, maxConcurrent?: number): EndpointRuntime {
  return { name, input: schemaOrAny(input), output: schemaOrAny(output), checkOutput: output !== undefined, handler, maxConcurrent: maxConcurrent ?? Infinity, inFlight: 0, overdue: 0 };
}

/**
 * Handles one request and never rejects: whatever goes wrong becomes an error reply.
 * `settled` runs once at the end (in-flight accounting for graceful stop). Around the
 * pipeline: a SERVER span when an OpenTelemetry SDK is registered, the request metrics,
 * and an audit record when the handler ran.
 */
export async function handleRequest(scope: InstanceScope, ep: EndpointRuntime, msg: Msg, defaultTimeoutMs: number, settled: () => void): Promise<void> {
  const t0 = performance.now();
  const startedAt = Date.now();
  const meta = readRequestMeta(msg, startedAt, defaultTimeoutMs);
  if (meta.deadline > scope.latestDeadline) scope.latestDeadline = meta.deadline;
  const { telemetry } = scope;
  const tracer = telemetry.tracing ? activeTracer() : undefined;
  const span = tracer ? serverSpan(tracer, scope, ep, msg.subject, meta) : undefined;
  const recording = span !== undefined && span.isRecording();
  if (recording) {
    span.setAttributes(serverSpanTemplate(scope, ep, msg.subject).attributes);
    span.setAttribute("svcmesh.request_id", meta.requestId);
  }
  const outcome = new Outcome();
  // One async function per request (not one per stage): each costs a promise and a frame.
  let slot: HandlerSlot | undefined; // set once admitted: holds a bulkhead slot until the end
  try {
    if (meta.deadline <= startedAt) {
      return fail(scope, msg, outcome, new MeshError("TIMEOUT", `deadline passed before ${scope.service}.${ep.name} could start`));
    }
    // Who is calling, and may they: verified against the policy in force (open without one).
    try {
      meta.caller = scope.guard.admit(meta, ep.name, startedAt);
    } catch (e) {
      // Refused access is what operators watch for: a misconfigured caller or a probe.
      const code = (e as MeshError).code;
      if (code === "FORBIDDEN") rejected(scope, "forbidden", ep.name, ((e as MeshError).details as { caller?: string } | undefined)?.caller ?? meta.caller);
      else if (code === "UNAUTHENTICATED") rejected(scope, "unauthenticated", ep.name, scope.guard.claimedName(meta.caller));
      return fail(scope, msg, outcome, e as MeshError);
    }
    // Nothing configured costs one field check each: no lookups, no allocations.
    if (scope.limiter !== undefined) {
      const limited = scope.limiter.take(meta.caller, performance.now());
      if (limited !== undefined) {
        rejected(scope, "rate_limited", ep.name, meta.caller);
        return fail(scope, msg, outcome, limited);
      }
    }
    if (ep.inFlight >= ep.maxConcurrent) {
      scope.limiter?.refund(meta.caller); // turned away, not served: the token goes back
      rejected(scope, "bulkhead_full", ep.name, meta.caller);
      return fail(scope, msg, outcome, new MeshError("UNAVAILABLE", `${scope.service}.${ep.name} is at capacity (${ep.maxConcurrent} requests in flight on instance ${scope.instance}); try again shortly`, {
        details: { maxConcurrent: ep.maxConcurrent },
      }));
    }
    // Failing closed (audit.whenFull "refuse"), a call whose record could not be kept does not run.
    if (scope.audit && telemetry.audit !== undefined && !telemetry.audit.admits(scope.service)) {
      scope.limiter?.refund(meta.caller);
      return fail(scope, msg, outcome, new MeshError("UNAVAILABLE", `${scope.service}.${ep.name} cannot record calls right now (its audit backlog is full: is JetStream reachable?); try again shortly`, {
        details: { audit: "backlog_full" },
      }));
    }
    ep.inFlight++;
    slot = scope.handlers.enter(ep, meta, startedAt);
    let input: unknown;
    try {
      input = decodeBody(msg.data);
    } catch {
      return fail(scope, msg, outcome, new MeshError("BAD_REQUEST", `request body for ${scope.service}.${ep.name} is not valid msgpack`));
    }
    let parsed: ReturnType<Schema["safeParse"]>;
    try {
      parsed = ep.input.safeParse(input);
    } catch (e) {
      return fail(scope, msg, outcome, schemaThrew(scope, ep, "input", e));
    }
    if (!parsed.success) {
      const issues = summarizeIssues(parsed.error);
      return fail(scope, msg, outcome, new MeshError("BAD_REQUEST", `invalid input for ${scope.service}.${ep.name}: ${describeIssues(issues)}`, { details: { issues } }));
    }
    let result: unknown;
    outcome.handlerRan = true;
    const ctx = new HandlerContext(scope, ep.name, meta, span);
    try {
      result = span ? withSpan(span, () => ep.handler(parsed.data, ctx)) : ep.handler(parsed.data, ctx);
      // A handler that answers at once is not awaited: that would cost a microtask turn.
      if (isThenable(result)) result = await result;
    } catch (e) {
      const atDeadline = abortedAtDeadline(ctx, e);
      releaseSignal(ctx);
      if (atDeadline) {
        return fail(scope, msg, outcome, new MeshError("TIMEOUT", `${scope.service}.${ep.name} stopped at the request's deadline (ctx.signal)`));
      }
      return fail(scope, msg, outcome, handlerFailure(scope, ep, e));
    }
    releaseSignal(ctx);
    if (ep.checkOutput) {
      let checked: ReturnType<Schema["safeParse"]>;
      try {
        checked = ep.output.safeParse(result);
      } catch (e) {
        return fail(scope, msg, outcome, schemaThrew(scope, ep, "output", e));
      }
      if (!checked.success) {
        const issues = summarizeIssues(checked.error);
        scope.logger.error({ endpoint: ep.name, issues }, "handler returned output that does not match its schema");
        return fail(scope, msg, outcome, new MeshError("BAD_RESPONSE", `${scope.service}.${ep.name} produced invalid output: ${describeIssues(issues)}`, { details: { issues } }));
      }
      result = checked.data;
    }
    if (!msg.reply) return;
    let frame: Frame;
    try {
      frame = hpubFrame(msg.reply, "", scope.okHead, "", encodeBodyShared(result));
    } catch (e) {
      return fail(scope, msg, outcome, new MeshError("BAD_RESPONSE", `${scope.service}.${ep.name} returned a value msgpack cannot encode: ${(e as Error).message}`));
    }
    try {
      scope.frames.publish(frame);
    } catch (e) {
      fail(scope, msg, outcome, replyFailure(scope, ep, e, frame.bodyEnd - frame.bodyStart));
    }
  } catch (e) {
    scope.logger.error({ err: e, endpoint: ep.name }, "request failed outside the handler");
    fail(scope, msg, outcome, new MeshError("HANDLER_ERROR", "internal error while handling the request"));
  } finally {
    if (slot !== undefined) {
      ep.inFlight--;
      scope.handlers.leave(slot);
    }
    settled();
    const ms = performance.now() - t0;
    if (recording) {
      span.setAttribute("svcmesh.caller", meta.caller);
      endSpan(span, outcome.status, outcome.message);
    }
    else span?.end();
    telemetry.metrics?.request(scope.service, ep.name, outcome.status, ms);
    if (outcome.handlerRan && scope.audit) audit(scope, ep, meta, startedAt, ms, outcome.status);
  }
}

/**
 * The request's SERVER span. One whose trace is not sampled records nothing, so it
 * gets no span at all unless a context manager is registered (then the handler's own
 * spans need it as their parent): ctx.trace and nested calls continue the incoming
 * trace context, parsed only if asked for.
 */
function serverSpan(tracer: Tracer, scope: InstanceScope, ep: EndpointRuntime, subject: string, meta: RequestMeta): Span | undefined {
  const follow = scope.telemetry.followParentSampling && notSampled(meta.traceparent);
  if (follow && !contextManaged()) return undefined;
  const parent = parseTraceparent(meta.traceparent, meta.tracestate);
  if (follow && parent) return unsampledSpan(parent);
  return startServerSpan(tracer, serverSpanTemplate(scope, ep, subject).name, parent);
}

function serverSpanTemplate(scope: InstanceScope, ep: EndpointRuntime, subject: string): SpanTemplate {
  if (ep.spanTemplate?.subject !== subject) {
    ep.spanTemplate = { subject, ...spanTemplate(scope.service, ep.name, { "messaging.destination.name": subject, "svcmesh.instance": scope.instance }) };
  }
  return ep.spanTemplate;
}

/** A class, not an object literal, for the reason RequestMeta is one (wire.ts). */
class Outcome {
  /** "ok" or the error code replied. */
  status = "ok";
  message: string | undefined = undefined;
  /** The handler was called (the request passed every check): it gets an audit record. */
  handlerRan = false;
}

/** Records the failure and replies with it. */
function fail(scope: InstanceScope, msg: Msg, outcome: Outcome, e: MeshError): void {
  outcome.status = e.code;
  outcome.message = e.message;
  replyError(scope, msg, e);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value instanceof Promise || (typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function");
}

/** One audit record for a request whose handler ran (audit/writer.ts stores it once per request id). */
function audit(scope: InstanceScope, ep: EndpointRuntime, meta: RequestMeta, startedAt: number, ms: number, status: string): void {
  try {
    ep.auditEncoder ??= new AuditRecordEncoder({ service: scope.service, version: scope.version, instance: scope.instance, endpoint: ep.name });
    const policy = scope.policyRevision();
    const call: AuditRecordCall = {
      time: startedAt,
      caller: meta.caller,
      requestId: meta.requestId,
      traceId: traceIdOf(meta.traceparent),
      status,
      durationMs: Math.round(ms * 1000) / 1000,
      ...(policy !== undefined ? { policy: String(policy) } : {}),
    };
    scope.telemetry.audit?.write(scope.auditSubject, meta.requestId, ep.auditEncoder.encode(call));
  } catch (e) {
    scope.logger.error({ err: e, endpoint: ep.name }, "could not write the audit record");
  }
}

/** Tells the instance's listener (mesh events) about a rejection; a throwing listener changes nothing. */
function rejected(scope: InstanceScope, type: RejectionType, endpoint: string, caller: string): void {
  if (scope.onRejected === undefined) return;
  try {
    scope.onRejected({ type, service: scope.service, endpoint, caller });
  } catch (e) {
    scope.logger.warn({ err: e, type }, "onRejected listener threw");
  }
}

/**
 * Codes about the path to a service. Thrown by a handler they come from one of its own
 * calls, and passed on as they are they would make this service look down (and make
 * its callers forget a good discovery view), so they travel as UNAVAILABLE.
 */
const PATH_CODES: ReadonlySet<string> = new Set(["NO_RESPONDERS", "CIRCUIT_OPEN"]);

/** A MeshError thrown by a handler keeps its code; anything else is HANDLER_ERROR with its message only. */
function handlerFailure(scope: InstanceScope, ep: EndpointRuntime, e: unknown): MeshError {
  if (isMeshError(e) && !(isErrorCode(e.code) && typeof e.message === "string")) {
    // Branded, but not made by MeshError (another copy of the package, a hand-made
    // object): its code and message would go into the reply's headers as they are.
    scope.logger.error({ err: e, endpoint: ep.name }, "handler threw a MeshError-like value without a known code and a message");
    const message = typeof e.message === "string" && e.message ? e.message : "handler failed";
    return new MeshError("HANDLER_ERROR", isErrorCode(e.code) ? message : `${message} (unknown error code ${JSON.stringify(String(e.code)).slice(0, 80)})`);
  }
  if (isMeshError(e)) {
    if (!PATH_CODES.has(e.code)) return e;
    return new MeshError("UNAVAILABLE", `${scope.service}.${ep.name} depends on a service that failed: ${e.code}: ${e.message}`, {
      details: { dependency: { code: e.code, message: e.message, details: e.details } },
    });
  }
  scope.logger.error({ err: e, endpoint: ep.name }, "handler threw");
  const message = e instanceof Error ? e.message : String(e);
  return new MeshError("HANDLER_ERROR", message || "handler failed");
}

/**
 * Whether a callee turned a request away before serving it, giving its rate-limit token
 * back (a full bulkhead, an audit backlog refusing calls): the caller's mirror of the
 * limit gives its token back too (interceptors/rate-limit.ts). Read from the details
 * those two refusals above carry.
 */
export function turnedAwayUnserved(e: MeshError): boolean {
  const details = e.details as { maxConcurrent?: unknown; audit?: unknown } | undefined;
  return e.code === "UNAVAILABLE" && (details?.maxConcurrent !== undefined || details?.audit !== undefined);
}

/** A schema that throws instead of reporting issues (a transform that throws, an async refine): the service's bug. */
function schemaThrew(scope: InstanceScope, ep: EndpointRuntime, which: "input" | "output", e: unknown): MeshError {
  scope.logger.error({ err: e, endpoint: ep.name }, `the ${which} schema threw`);
  const why = (e as Error)?.message ?? String(e);
  return new MeshError(which === "input" ? "HANDLER_ERROR" : "BAD_RESPONSE", `${scope.service}.${ep.name}'s ${which} schema threw instead of checking: ${why}`);
}

function replyFailure(scope: InstanceScope, ep: EndpointRuntime, e: unknown, size: number): MeshError {
  const code = (e as { code?: string }).code;
  const why = code === "MAX_PAYLOAD_EXCEEDED" ? `a reply of ${size} bytes exceeds the server's max_payload` : (e as Error).message;
  return new MeshError("BAD_RESPONSE", `${scope.service}.${ep.name} could not reply: ${why}`);
}

export function replyError(scope: Pick<InstanceScope, "logger" | "origin">, msg: Msg, error: MeshError): void {
  if (!msg.reply) {
    // Nobody to tell: a failed fire-and-forget request must not vanish without a trace.
    scope.logger.warn({ code: error.code, subject: msg.subject, reason: error.message.slice(0, 200) }, "dropped a failed request that has no reply subject");
    return;
  }
  const headers = asNatsHeaders(new ErrorReplyHeaders(error.code, error.message, scope.origin));
  try {
    msg.respond(errorReplyBody(error), { headers });
  } catch {
    // Details too large for max_payload: the caller still gets the code and message.
    try {
      msg.respond(undefined, { headers });
    } catch (e) {
      scope.logger.warn({ err: e, code: error.code }, "could not send error reply");
    }
  }
}
