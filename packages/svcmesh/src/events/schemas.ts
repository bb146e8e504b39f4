// The mesh events: one zod schema per type, published on `svc.events.<type>.<service>`
// as msgpack and captured by the SVC_EVENTS JetStream stream. Workflows may validate
// with these schemas; `mesh.events.consume()` hands over only events that pass them.
import { z } from "zod";

/**
 * Every event carries this envelope.
 * - `type`: the event type, also the subject's third token.
 * - `service`: the service the event is about (the subject's last token): the target
 *   of a call for caller-side events, the serving service for callee-side ones.
 * - `at`: when it was emitted (ms since the epoch). For coalesced events: the end of
 *   the window.
 * - `source`: who emitted it: the mesh connection's name (`connect({ name })`), or the
 *   instance id for instance announcements.
 */
const envelope = {
  service: z.string().min(1).describe("the service the event is about; the subject's last token"),
  at: z.number().int().nonnegative().describe("emitted at, ms since the epoch"),
  source: z.string().describe("who emitted it: the connection's name, or the instance id"),
};

/**
 * Breaker counters over its rolling window at the moment of the transition, with
 * opossum's names (`fires`, `successes`, `failures`, `timeouts`, `rejects`, ...) plus
 * `errorPercentage` when known. Open-ended: consumers should read what they know.
 */
export const BreakerStats = z.record(z.string(), z.number()).describe("breaker counters over its rolling window");

/** The caller → target breaker fields of every circuit event. */
const circuit = {
  caller: z.string().describe("the calling mesh connection whose breaker changed state"),
  target: z.string().min(1).describe("the breaker's key: target service and major version, e.g. payments.v2"),
  stats: BreakerStats.optional(),
};

/**
 * Coalesced per-call events: one event per (type, caller, target, endpoint) and window
 * (1 s by default), whose `count` says how many calls it stands for.
 */
const coalesced = {
  caller: z.string().describe("the caller the calls came from"),
  target: z.string().min(1).describe("the target as the emitter knows it: a service (payments) or service and major (payments.v2)"),
  endpoint: z.string().describe("the endpoint called"),
  count: z.number().int().positive().describe("how many calls this event stands for"),
  windowStart: z.number().int().nonnegative().describe("first call counted, ms since the epoch"),
  windowEnd: z.number().int().nonnegative().describe("end of the window (when it was flushed), ms since the epoch"),
};

/** A caller's breaker to `target` opened: calls fail at once with CIRCUIT_OPEN. */
export const CircuitOpenEvent = z.object({ type: z.literal("circuit_open"), ...envelope, ...circuit })
  .describe("a caller's breaker to a target opened");
/** The breaker let a probe through after its reset time. */
export const CircuitHalfOpenEvent = z.object({ type: z.literal("circuit_half_open"), ...envelope, ...circuit })
  .describe("a breaker lets a probe call through");
/** The probe succeeded: the breaker closed, calls flow again. */
export const CircuitCloseEvent = z.object({ type: z.literal("circuit_close"), ...envelope, ...circuit })
  .describe("a breaker closed again");

/** Calls that ran out of their deadline (coalesced). */
export const TimeoutEvent = z.object({ type: z.literal("timeout"), ...envelope, ...coalesced })
  .describe("calls that timed out, coalesced per caller, target, endpoint and window");
/** Calls refused with RATE_LIMITED, by the callee or the caller's mirror of its limit (coalesced). */
export const RateLimitedEvent = z.object({ type: z.literal("rate_limited"), ...envelope, ...coalesced })
  .describe("calls refused with RATE_LIMITED, coalesced");
/** Calls nobody was listening for (coalesced). */
export const NoRespondersEvent = z.object({ type: z.literal("no_responders"), ...envelope, ...coalesced })
  .describe("calls that found no instance listening, coalesced");
/** Calls a callee refused with FORBIDDEN: the policy in force does not let the caller call the endpoint (coalesced). */
export const ForbiddenEvent = z.object({ type: z.literal("forbidden"), ...envelope, ...coalesced })
  .describe("calls a callee refused with FORBIDDEN, coalesced");
/**
 * Calls a callee refused with UNAUTHENTICATED (coalesced). `caller` is the name the
 * request claimed (its Mesh-Caller header) when the policy registers that name, else "":
 * unproven either way, and names a prober makes up are not told apart.
 */
export const UnauthenticatedEvent = z.object({ type: z.literal("unauthenticated"), ...envelope, ...coalesced })
  .describe("calls a callee refused with UNAUTHENTICATED, coalesced; caller is the registered name the request claimed, else empty");
/** Calls a callee refused because the endpoint's bulkhead was full (coalesced). */
export const BulkheadFullEvent = z.object({ type: z.literal("bulkhead_full"), ...envelope, ...coalesced })
  .describe("calls refused by a full bulkhead, coalesced");
/**
 * Calls that failed after their last retry. Coalesced like the per-call events (a
 * storm of failing calls must not become a storm of events): `attempts` and
 * `lastCode` are those of the latest call in the window.
 */
export const RetryExhaustedEvent = z.object({
  type: z.literal("retry_exhausted"),
  ...envelope,
  ...coalesced,
  attempts: z.number().int().positive().describe("attempts made, the first included"),
  lastCode: z.string().describe("the error code of the last attempt (an ErrorCode)"),
}).describe("calls that failed after their last retry, coalesced");

const instance = {
  id: z.string().min(1).describe("the instance id"),
  version: z.string().describe("the instance's semver version"),
  endpoints: z.array(z.string()).describe("endpoint names"),
};
/** An instance started serving. `source` is its id. */
export const InstanceStartedEvent = z.object({ type: z.literal("instance_started"), ...envelope, ...instance })
  .describe("an instance started serving");
/** An instance stopped serving (it drains what it has). `source` is its id. */
export const InstanceStoppedEvent = z.object({ type: z.literal("instance_stopped"), ...envelope, ...instance })
  .describe("an instance stopped serving");

/**
 * A policy document was applied (stored in the policy KV bucket) and is now in force
 * mesh-wide. Published by whoever applied it, on `svc.events.policy_applied._mesh`:
 * `service` is `_mesh` (it is about the whole mesh; no service name starts with `_`).
 */
export const PolicyAppliedEvent = z.object({
  type: z.literal("policy_applied"),
  ...envelope,
  revision: z.number().int().positive().describe("the policy's revision in the KV bucket"),
  by: z.string().min(1).describe("who applied it (an operator or tool name)"),
  sha: z.string().optional().describe("sha256 of the document's text, hex"),
}).describe("a policy document was applied and is in force");

/**
 * The audit trail of `service` on the emitting process stopped keeping records: its
 * backlog is full (JetStream slow or unreachable) or the server has no JetStream. Under
 * `whenFull` "drop" new records are dropped; under "refuse" calls are refused with
 * UNAVAILABLE before their handler runs. Once per episode and service.
 */
export const AuditDegradedEvent = z.object({
  type: z.literal("audit_degraded"),
  ...envelope,
  mode: z.enum(["drop", "refuse"]).describe("what happens meanwhile: records dropped, or calls refused"),
  reason: z.enum(["backlog_full", "no_jetstream"]).describe("why records cannot be kept"),
  backlog: z.number().int().nonnegative().describe("records waiting when it began"),
  maxBacklog: z.number().int().positive().describe("the writer's bound on waiting records"),
}).describe("an audit trail stopped keeping records: dropping them, or refusing calls");

/** Records are being stored again after an `audit_degraded`. */
export const AuditRecoveredEvent = z.object({
  type: z.literal("audit_recovered"),
  ...envelope,
  mode: z.enum(["drop", "refuse"]).describe("what happened meanwhile"),
  dropped: z.number().int().nonnegative().describe("records the emitting process dropped during the episode"),
  refused: z.number().int().nonnegative().describe("calls the emitting process refused during the episode"),
  durationMs: z.number().int().nonnegative().describe("how long the episode lasted"),
}).describe("an audit trail keeps records again");

/** Every mesh event, discriminated by `type`. */
export const MeshEventSchema = z.discriminatedUnion("type", [
  CircuitOpenEvent,
  CircuitHalfOpenEvent,
  CircuitCloseEvent,
  TimeoutEvent,
  RateLimitedEvent,
  NoRespondersEvent,
  BulkheadFullEvent,
  ForbiddenEvent,
  UnauthenticatedEvent,
  RetryExhaustedEvent,
  InstanceStartedEvent,
  InstanceStoppedEvent,
  PolicyAppliedEvent,
  AuditDegradedEvent,
  AuditRecoveredEvent,
]);

export type MeshEvent = z.infer<typeof MeshEventSchema>;
export type MeshEventType = MeshEvent["type"];
export type MeshEventOf<T extends MeshEventType> = Extract<MeshEvent, { type: T }>;

/** The schema of each type, e.g. `eventSchemas.circuit_open.parse(x)`. */
export const eventSchemas = {
  circuit_open: CircuitOpenEvent,
  circuit_half_open: CircuitHalfOpenEvent,
  circuit_close: CircuitCloseEvent,
  timeout: TimeoutEvent,
  rate_limited: RateLimitedEvent,
  no_responders: NoRespondersEvent,
  bulkhead_full: BulkheadFullEvent,
  forbidden: ForbiddenEvent,
  unauthenticated: UnauthenticatedEvent,
  retry_exhausted: RetryExhaustedEvent,
  instance_started: InstanceStartedEvent,
  instance_stopped: InstanceStoppedEvent,
  policy_applied: PolicyAppliedEvent,
  audit_degraded: AuditDegradedEvent,
  audit_recovered: AuditRecoveredEvent,
} as const satisfies { [T in MeshEventType]: z.ZodType<MeshEventOf<T>> };

export const EVENT_TYPES = Object.keys(eventSchemas) as MeshEventType[];

/** The per-call types: never one event per call, always counted into windows. */
export const COALESCED_TYPES = ["timeout", "rate_limited", "no_responders", "bulkhead_full", "forbidden", "unauthenticated", "retry_exhausted"] as const;
export type CoalescedEventType = (typeof COALESCED_TYPES)[number];
/** The types published once per state change with `emit()`. */
export type EmittedEventType = Exclude<MeshEventType, CoalescedEventType>;

export function isMeshEventType(value: unknown): value is MeshEventType {
  return typeof value === "string" && Object.hasOwn(eventSchemas, value);
}

/**
 * What `emit()` takes: an event without its envelope's `at` and `source` (filled in),
 * and `service` optional (derived from `target` for circuit events).
 */
export type EmitInput = {
  [T in EmittedEventType]: Omit<MeshEventOf<T>, "at" | "source" | "service"> & Partial<Pick<MeshEventOf<T>, "at" | "source" | "service">>;
}[EmittedEventType];

/** The service token of a target key: `payments.v2` and `payments@^2` → `payments`. */
export function serviceOfTarget(target: string): string {
  let end = target.length;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 46 /* . */ || c === 64 /* @ */) {
      end = i;
      break;
    }
  }
  return subjectToken(target.slice(0, end));
}

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** A string safe as one subject token: anything else becomes `_`s. */
export function subjectToken(text: string): string {
  if (TOKEN.test(text)) return text;
  const t = text.replace(/[^A-Za-z0-9_-]/g, "_");
  return t.length > 0 ? t : "_";
}
