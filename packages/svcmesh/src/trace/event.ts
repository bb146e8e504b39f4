// svc.trace events: one record per call, published by the caller when the call ends,
// on `svc.trace.<service>.<endpoint>`. Records are batched: one message is a msgpack
// array of records for one subject. They are a live feed for `svcmesh watch` / `top`
// (plain NATS, not stored); the audit trail (audit/) is the durable record.
import { z } from "zod";
import { TRACE_ROOT } from "../subjects.js";
import { decodeBody, encodeBody } from "../wire.js";

export const TraceEventSchema = z.object({
  time: z.number().describe("when the call started, ms since the epoch"),
  caller: z.string().describe("the calling mesh connection's name"),
  service: z.string().min(1).describe("the target service"),
  endpoint: z.string().describe("the endpoint called"),
  version: z.string().describe("the version of the instance that answered, or \"\" if none did"),
  instance: z.string().describe("the id of the instance that answered last, or \"\" if none did"),
  requestId: z.string().describe("the call's request id (Mesh-Request-Id, the same on every attempt)"),
  traceId: z.string().describe("W3C trace id, 32 hex digits"),
  spanId: z.string().describe("the caller's span id for this call, 16 hex digits"),
  latencyMs: z.number().nonnegative().describe("the whole call as the caller saw it, retries included"),
  status: z.string().describe("\"ok\" or the error code the call failed with"),
  attempts: z.number().int().nonnegative().describe("attempts sent (0: refused before sending, e.g. CIRCUIT_OPEN)"),
  rate: z.number().min(0).max(1).describe("sampling rate of ok calls: an ok record stands for 1/rate calls; errors are always kept"),
});

export type TraceEvent = z.infer<typeof TraceEventSchema>;

export const TRACE_ALL = `${TRACE_ROOT}.>`;

export function traceSubject(service: string, endpoint: string): string {
  return `${TRACE_ROOT}.${service}.${endpoint}`;
}

/** The subscription subject for a service and/or endpoint filter (`*` where not given). */
export function traceFilterSubject(service?: string, endpoint?: string): string {
  if (!service && !endpoint) return TRACE_ALL;
  return `${TRACE_ROOT}.${service || "*"}.${endpoint || "*"}`;
}

export function encodeTraceBatch(events: readonly TraceEvent[]): Uint8Array {
  return encodeBody(events);
}

export interface DecodedTraceBatch {
  events: TraceEvent[];
  /** Records in the message that did not match the schema (or the whole message, if it is not a batch). */
  malformed: number;
}

/** Decodes one message from svc.trace.>; anything malformed is counted, never thrown. */
export function decodeTraceBatch(data: Uint8Array): DecodedTraceBatch {
  let body: unknown;
  try {
    body = decodeBody(data);
  } catch {
    return { events: [], malformed: 1 };
  }
  if (!Array.isArray(body)) return { events: [], malformed: 1 };
  const events: TraceEvent[] = [];
  let malformed = 0;
  for (const item of body) {
    const r = TraceEventSchema.safeParse(item);
    if (r.success) events.push(r.data);
    else malformed++;
  }
  return { events, malformed };
}
