// The wire vocabulary: every subject and header name the mesh uses lives here.

export const SUBJECT_ROOT = "svc";
export const TRACE_ROOT = "svc.trace";
export const EVENTS_ROOT = "svc.events";
export const AUDIT_ROOT = "svc.audit";

/** Names that would collide with the mesh's own subjects under `svc.`. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(["trace", "events", "audit"]);

export const Header = {
  caller: "Mesh-Caller",
  deadline: "Mesh-Deadline",
  requestId: "Mesh-Request-Id",
  /** The caller's signed, short-lived identity token (identity/token.ts). */
  token: "Mesh-Token",
  /** Revision of the policy the caller had in force. */
  policy: "Mesh-Policy",
  errorCode: "Mesh-Error-Code",
  errorMessage: "Mesh-Error-Message",
  /** On replies: the instance that answered, and its version. */
  instance: "Mesh-Instance",
  version: "Mesh-Version",
  /** W3C trace context (trace/context.ts). */
  traceparent: "traceparent",
  tracestate: "tracestate",
} as const;

const NAME = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const ENDPOINT = /^[A-Za-z0-9_-]{1,64}$/;

export function validServiceName(name: string): boolean {
  return NAME.test(name) && !RESERVED_NAMES.has(name);
}

export function validEndpointName(name: string): boolean {
  return ENDPOINT.test(name);
}

/** `svc.payments.v2`: every instance of a major version serves under it, in one queue group. */
export function majorLane(service: string, major: number): string {
  return `${SUBJECT_ROOT}.${service}.v${major}`;
}

/** `svc.payments.2_1_0`: the exact-version lane, for pinned and canary routing. */
export function exactLane(service: string, version: string): string {
  return `${SUBJECT_ROOT}.${service}.${version.replace(/[.+]/g, "_")}`;
}

/** Queue group names may not contain dots (the nats.js services framework refuses them). */
export function queueGroup(lane: string): string {
  return lane.replace(/\./g, "-");
}

/** nats.js's inbox prefix: what a connection without a seed (or an inboxPrefix) uses. */
export const DEFAULT_INBOX_PREFIX = "_INBOX";
