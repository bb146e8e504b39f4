// svc.trace events: one record per call, published by the caller when the call ends,
// on `svc.trace.<service>.<endpoint>`. Records are batched: one message carries the
// records of one caller for one endpoint. They are a live feed for `svcmesh watch` /
// `top` (plain NATS, not stored); the audit trail (audit/) is the durable record.
//
// Wire format of a message (msgpack), compact because at 100% sampling every call is
// encoded: what the records of a message share is written once, and each call is a
// positional array rather than a map whose 13 keys would be encoded again every time.
//   { v: 1, caller, service, endpoint, rate,
//     origins: [[instance, version], ...],          // who answered, listed once
//     calls: [[time, origin, requestId, traceId, spanId, latencyMs, status, attempts], ...] }
// `origin` indexes `origins`, or is -1 when no instance answered.
import { z } from "zod";
import { TRACE_ROOT } from "../subjects.js";
import { decodeBody, encodeBodyShared } from "../wire.js";

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

/** One call in a message: see the wire format above. The buffer sets `origin`. */
export type TraceCall = [time: number, origin: number, requestId: string, traceId: string, spanId: string, latencyMs: number, status: string, attempts: number];

/** What every record of one message shares. */
export interface TraceBatchHeader {
  caller: string;
  service: string;
  endpoint: string;
  rate: number;
}

/**
 * The records of one message as they accumulate (trace/buffer.ts keeps one per
 * endpoint). Each call is encoded as it is added: a batch waits up to a flush interval,
 * and at 100% sampling thousands of records held as objects that long outlived the
 * young generation, so every one was copied by the garbage collector and promoted.
 * Bytes in one growing buffer cost it nothing.
 */
export class TraceBatch {
  private readonly origins: [string, string][] = [];
  private readonly originIndex = new Map<string, number>();
  /** The encoded calls, back to back: the body of the `calls` array. */
  private bytes: Uint8Array = new Uint8Array(0);
  private used = 0;
  private count = 0;

  constructor(readonly header: TraceBatchHeader) {}

  /** The calls held. */
  get size(): number {
    return this.count;
  }

  /** Adds a call answered by `instance` ("" when none answered); returns the calls held. */
  add(call: TraceCall, instance: string, version: string): number {
    if (instance === "") call[1] = -1;
    else {
      let i = this.originIndex.get(instance);
      if (i === undefined) {
        i = this.origins.push([instance, version]) - 1;
        this.originIndex.set(instance, i);
      }
      call[1] = i;
    }
    const encoded = encodeBodyShared(call);
    if (this.used + encoded.length > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(2048, 2 * (this.used + encoded.length)));
      grown.set(this.bytes.subarray(0, this.used));
      this.bytes = grown;
    }
    this.bytes.set(encoded, this.used);
    this.used += encoded.length;
    return ++this.count;
  }

  encode(): Uint8Array {
    const { caller, service, endpoint, rate } = this.header;
    // The map with an empty `calls` (its last key) ends in 0x90, an empty array: that
    // byte becomes an array32 header for the calls, whose bytes follow.
    const head = encodeBodyShared({ v: 1, caller, service, endpoint, rate, origins: this.origins, calls: [] });
    if (head[head.length - 1] !== 0x90) throw new Error("trace batch: unexpected msgpack layout");
    const out = Buffer.allocUnsafe(head.length - 1 + 5 + this.used);
    out.set(head.subarray(0, head.length - 1));
    let at = head.length - 1;
    out[at] = 0xdd;
    out.writeUInt32BE(this.count, at + 1);
    at += 5;
    out.set(this.bytes.subarray(0, this.used), at);
    return out;
  }
}

/**
 * Encodes records as one message. They must share caller, service, endpoint and rate
 * (one message is one caller's records for one endpoint).
 */
export function encodeTraceBatch(events: readonly TraceEvent[]): Uint8Array {
  const first = events[0];
  if (!first) throw new Error("a trace batch holds at least one record");
  const batch = new TraceBatch({ caller: first.caller, service: first.service, endpoint: first.endpoint, rate: first.rate });
  for (const e of events) {
    if (e.caller !== first.caller || e.service !== first.service || e.endpoint !== first.endpoint || e.rate !== first.rate) {
      throw new Error("the records of one trace batch must share caller, service, endpoint and rate");
    }
    batch.add([e.time, -1, e.requestId, e.traceId, e.spanId, e.latencyMs, e.status, e.attempts], e.instance, e.version);
  }
  return batch.encode();
}

const BatchSchema = z.object({
  v: z.literal(1),
  caller: z.string(),
  service: z.string().min(1),
  endpoint: z.string(),
  rate: z.number().min(0).max(1),
  origins: z.array(z.tuple([z.string(), z.string()])),
  calls: z.array(z.unknown()),
});

const CallSchema = z.tuple([
  z.number(),
  z.number().int().min(-1),
  z.string(),
  z.string(),
  z.string(),
  z.number().nonnegative(),
  z.string(),
  z.number().int().nonnegative(),
]);

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
  const batch = BatchSchema.safeParse(body);
  if (!batch.success) return { events: [], malformed: 1 };
  const { caller, service, endpoint, rate, origins, calls } = batch.data;
  const events: TraceEvent[] = [];
  let malformed = 0;
  for (const item of calls) {
    const r = CallSchema.safeParse(item);
    const origin = r.success && r.data[1] >= 0 ? origins[r.data[1]] : undefined;
    if (!r.success || (r.data[1] >= 0 && !origin)) {
      malformed++;
      continue;
    }
    const [time, , requestId, traceId, spanId, latencyMs, status, attempts] = r.data;
    events.push({ time, caller, service, endpoint, version: origin?.[1] ?? "", instance: origin?.[0] ?? "", requestId, traceId, spanId, latencyMs, status, attempts, rate });
  }
  return { events, malformed };
}
