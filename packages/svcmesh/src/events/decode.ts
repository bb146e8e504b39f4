// Reading events back: subject filters for the stream, and a stored message turned
// into a validated event (used by the library's consumer and by `svcmesh events`).
import { EVENTS_ROOT } from "../subjects.js";
import { decodeBody } from "../wire.js";
import { eventSchemas, isMeshEventType, type MeshEvent } from "./schemas.js";

export const EVENTS_ALL = `${EVENTS_ROOT}.>`;
const PREFIX = `${EVENTS_ROOT}.`;

/**
 * The one filter subject a consumer can have on nats-server 2.9 (filter_subjects, the
 * list form, needs 2.10): exact when at most one type and one service are asked for,
 * a wildcard otherwise. `eventMatches` then drops what the wildcard let through.
 */
export function eventsFilterSubject(types?: readonly string[], services?: readonly string[]): string {
  const type = types?.length === 1 ? types[0]! : "*";
  const service = services?.length === 1 ? services[0]! : "*";
  return type === "*" && service === "*" ? EVENTS_ALL : `${EVENTS_ROOT}.${type}.${service}`;
}

/** Whether an event of `type` about `service` is one the filter lists ask for. */
export function eventMatches(type: string, service: string, types?: ReadonlySet<string>, services?: ReadonlySet<string>): boolean {
  return (types === undefined || types.size === 0 || types.has(type)) && (services === undefined || services.size === 0 || services.has(service));
}

/** `svc.events.<type>.<service>` → its type and service, or undefined. */
export function parseEventSubject(subject: string): { type: string; service: string } | undefined {
  if (!subject.startsWith(PREFIX)) return undefined;
  const rest = subject.slice(PREFIX.length);
  const dot = rest.indexOf(".");
  if (dot <= 0 || dot === rest.length - 1 || rest.indexOf(".", dot + 1) >= 0) return undefined;
  return { type: rest.slice(0, dot), service: rest.slice(dot + 1) };
}

export type DecodedEvent =
  | { kind: "event"; event: MeshEvent }
  /** A type this version does not know (a newer publisher's): envelope checked only. */
  | { kind: "unknown"; event: Record<string, unknown> & { type: string; service: string; at: number; source: string } }
  | { kind: "malformed"; reason: string };

/**
 * Decodes and validates one stored event. Envelope fields a publisher left out are
 * filled from the subject (`type`, `service`), the stream's timestamp (`at`) and, for
 * instance announcements, the instance id (`source`): the announcements that
 * instances publish carry only {service, id, version, endpoints}.
 */
export function decodeEvent(subject: string, data: Uint8Array, storedAtMs: number): DecodedEvent {
  const where = parseEventSubject(subject);
  if (!where) return { kind: "malformed", reason: `not an event subject: ${subject}` };
  let body: unknown;
  try {
    body = decodeBody(data);
  } catch (e) {
    return { kind: "malformed", reason: `body is not msgpack: ${(e as Error).message}` };
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return { kind: "malformed", reason: "body is not a map" };
  const b = body as Record<string, unknown>;
  if (b.type !== undefined && b.type !== where.type) return { kind: "malformed", reason: `type ${String(b.type)} does not match the subject's ${where.type}` };
  if (b.service !== undefined && b.service !== where.service) return { kind: "malformed", reason: `service ${String(b.service)} does not match the subject's ${where.service}` };
  const filled = {
    ...b,
    type: where.type,
    service: where.service,
    at: b.at ?? Math.floor(storedAtMs),
    source: b.source ?? (typeof b.id === "string" ? b.id : ""),
  };
  if (!isMeshEventType(where.type)) {
    if (typeof filled.at !== "number" || typeof filled.source !== "string") return { kind: "malformed", reason: "bad envelope" };
    return { kind: "unknown", event: filled as Record<string, unknown> & { type: string; service: string; at: number; source: string } };
  }
  const checked = eventSchemas[where.type].safeParse(filled);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    return { kind: "malformed", reason: `invalid ${where.type} event: ${issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "schema mismatch"}` };
  }
  return { kind: "event", event: checked.data };
}
