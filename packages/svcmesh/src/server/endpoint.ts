// One request through the callee's pipeline: read headers → deadline → per-caller rate
// limit → bulkhead → decode → validate input → handler → validate output → reply.
// Every failure becomes an error reply; nothing a caller sends can take the instance
// down. The cheap rejections (deadline, rate limit, bulkhead) come before the body is
// decoded, and none of them runs the handler.
import type { Msg } from "nats";
import type { Logger } from "pino";
import { MeshError, isMeshError } from "../errors.js";
import { type Schema, describeIssues, schemaOrAny, summarizeIssues } from "../schema.js";
import { ErrorReplyHeaders, asNatsHeaders, decodeBody, encodeBody, errorReplyBody, readRequestMeta } from "../wire.js";
import { HandlerContext, type InstanceScope, type RejectionType } from "./context.js";

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
}

export function endpointRuntime(name: string, input: Schema | undefined, output: Schema | undefined, handler: Handler, maxConcurrent?: number): EndpointRuntime {
  return { name, input: schemaOrAny(input), output: schemaOrAny(output), checkOutput: output !== undefined, handler, maxConcurrent: maxConcurrent ?? Infinity, inFlight: 0 };
}

/**
 * Handles one request and never rejects: whatever goes wrong becomes an error reply.
 * `settled` runs once at the end (in-flight accounting for graceful stop).
 */
export async function handleRequest(scope: InstanceScope, ep: EndpointRuntime, msg: Msg, defaultTimeoutMs: number, settled: () => void): Promise<void> {
  let admitted = false;
  try {
    const now = Date.now();
    const meta = readRequestMeta(msg, now, defaultTimeoutMs);
    if (meta.deadline <= now) {
      return replyError(scope.logger, msg, new MeshError("TIMEOUT", `deadline passed before ${scope.service}.${ep.name} could start`));
    }
    // Who is calling, and may they: verified against the policy in force (open without one).
    try {
      meta.caller = scope.guard.admit(meta, ep.name, now);
    } catch (e) {
      return replyError(scope.logger, msg, e as MeshError);
    }
    // Nothing configured costs one field check each: no lookups, no allocations.
    if (scope.limiter !== undefined) {
      const limited = scope.limiter.take(meta.caller, performance.now());
      if (limited !== undefined) {
        rejected(scope, "rate_limited", ep.name, meta.caller);
        return replyError(scope.logger, msg, limited);
      }
    }
    if (ep.inFlight >= ep.maxConcurrent) {
      scope.limiter?.refund(meta.caller); // turned away, not served: the token goes back
      rejected(scope, "bulkhead_full", ep.name, meta.caller);
      return replyError(scope.logger, msg, new MeshError("UNAVAILABLE", `${scope.service}.${ep.name} is at capacity (${ep.maxConcurrent} requests in flight on instance ${scope.instance}); try again shortly`, {
        details: { maxConcurrent: ep.maxConcurrent },
      }));
    }
    ep.inFlight++;
    admitted = true;
    let input: unknown;
    try {
      input = decodeBody(msg.data);
    } catch {
      return replyError(scope.logger, msg, new MeshError("BAD_REQUEST", `request body for ${scope.service}.${ep.name} is not valid msgpack`));
    }
    const parsed = ep.input.safeParse(input);
    if (!parsed.success) {
      const issues = summarizeIssues(parsed.error);
      return replyError(scope.logger, msg, new MeshError("BAD_REQUEST", `invalid input for ${scope.service}.${ep.name}: ${describeIssues(issues)}`, { details: { issues } }));
    }
    let result: unknown;
    try {
      result = await ep.handler(parsed.data, new HandlerContext(scope, ep.name, meta));
    } catch (e) {
      return replyError(scope.logger, msg, handlerFailure(scope, ep, e));
    }
    if (ep.checkOutput) {
      const checked = ep.output.safeParse(result);
      if (!checked.success) {
        const issues = summarizeIssues(checked.error);
        scope.logger.error({ endpoint: ep.name, issues }, "handler returned output that does not match its schema");
        return replyError(scope.logger, msg, new MeshError("BAD_RESPONSE", `${scope.service}.${ep.name} produced invalid output: ${describeIssues(issues)}`, { details: { issues } }));
      }
      result = checked.data;
    }
    if (!msg.reply) return;
    let body: Uint8Array;
    try {
      body = encodeBody(result);
    } catch (e) {
      return replyError(scope.logger, msg, new MeshError("BAD_RESPONSE", `${scope.service}.${ep.name} returned a value msgpack cannot encode: ${(e as Error).message}`));
    }
    try {
      msg.respond(body);
    } catch (e) {
      replyError(scope.logger, msg, replyFailure(scope, ep, e, body.length));
    }
  } catch (e) {
    scope.logger.error({ err: e, endpoint: ep.name }, "request failed outside the handler");
    replyError(scope.logger, msg, new MeshError("HANDLER_ERROR", "internal error while handling the request"));
  } finally {
    if (admitted) ep.inFlight--;
    settled();
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

function replyFailure(scope: InstanceScope, ep: EndpointRuntime, e: unknown, size: number): MeshError {
  const code = (e as { code?: string }).code;
  const why = code === "MAX_PAYLOAD_EXCEEDED" ? `a reply of ${size} bytes exceeds the server's max_payload` : (e as Error).message;
  return new MeshError("BAD_RESPONSE", `${scope.service}.${ep.name} could not reply: ${why}`);
}

export function replyError(logger: Logger, msg: Msg, error: MeshError): void {
  if (!msg.reply) return;
  try {
    msg.respond(errorReplyBody(error), { headers: asNatsHeaders(new ErrorReplyHeaders(error.code, error.message)) });
  } catch (e) {
    logger.warn({ err: e, code: error.code }, "could not send error reply");
  }
}
