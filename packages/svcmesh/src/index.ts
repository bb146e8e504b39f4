// The public API of svcmesh. Sibling packages may also use "svcmesh/internal".
export { connect, Mesh, DEFAULT_SERVER, type ConnectOptions, type MeshDefaults, type TraceOptions } from "./mesh.js";
export type { TraceContext } from "./trace/context.js";
export { TraceEventSchema, type TraceEvent, TRACE_ALL, traceSubject, traceFilterSubject, decodeTraceBatch } from "./trace/event.js";
export type { TraceBufferStats } from "./trace/buffer.js";
export type { AuditOptions, AuditStats } from "./audit/writer.js";
export { AuditRecordSchema, type AuditRecord, AUDIT_STREAM, AUDIT_STREAM_DEFAULTS, type AuditStreamOptions, ensureAuditStream, auditSubject, decodeAuditRecord } from "./audit/record.js";
export { MeshError, isMeshError, type MeshErrorOptions } from "./errors.js";
export { ErrorCode, retryableCodes, isErrorCode } from "./codes.js";
export type { CallOptions, Fallback } from "./client/caller.js";
export type { CallSettingsInput, RetrySettings, BreakerSettings, RateLimit } from "./settings.js";
export type { MeshCalls, MeshClient } from "./calls.js";
export type { ServeOptions, EndpointSpec, ServiceHandle } from "./server/service.js";
export type { HandlerContext } from "./server/context.js";
export { parseTarget, type Target } from "./target.js";
export {
  MeshEvents,
  type MeshEventsOptions,
  MeshEventSchema,
  eventSchemas,
  EVENT_TYPES,
  COALESCED_TYPES,
  CircuitOpenEvent,
  CircuitHalfOpenEvent,
  CircuitCloseEvent,
  TimeoutEvent,
  RateLimitedEvent,
  NoRespondersEvent,
  BulkheadFullEvent,
  RetryExhaustedEvent,
  InstanceStartedEvent,
  InstanceStoppedEvent,
  PolicyAppliedEvent,
  AuditDegradedEvent,
  AuditRecoveredEvent,
  type MeshEvent,
  type MeshEventType,
  type MeshEventOf,
  type CoalescedEventType,
  type EmitInput,
  ensureEventsStream,
  EVENTS_STREAM,
  type EventsStreamOptions,
  type ConsumeOptions,
  type EventConsumer,
  type EventDelivery,
  type EventHandler,
} from "./events/index.js";
export {
  parsePolicy,
  formatPolicyErrors,
  diffPolicies,
  formatDiff,
  compileAuthorizer,
  settingsFor,
  rateLimitFor,
  policyJsonSchema,
  PolicyDocumentSchema,
  type PolicyDocument,
  type PolicyError,
  type PolicyParseResult,
  type PolicyChange,
  type AuthDecision,
  type Authorizer,
  type PolicyServiceSettings,
  type PolicyEndpointSettings,
  applyPolicy,
  getPolicy,
  watchPolicy,
  POLICY_BUCKET,
} from "./policy/index.js";
export * from "./identity/index.js";
export * from "./broker/nats-config.js";
export * from "./broker/from-policy.js";
