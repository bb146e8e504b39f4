// Audit records: one per call that reached a handler, written by the instance that ran
// it to `svc.audit.<service>` and kept in the SVC_AUDIT stream. The JetStream message id
// (Nats-Msg-Id) is the call's request id, the same on every attempt, so a retried call
// is stored once (within the stream's duplicate window).
import type { NatsConnection, StreamInfo } from "nats";
import { z } from "zod";
import { checkStreamOptions, createdDuplicateWindowMs, ensureStream, type StreamOptions, type StreamSpec } from "../jetstream/stream.js";
import { AUDIT_ROOT } from "../subjects.js";
import { decodeBody, encodeBody, encodeBodyShared } from "../wire.js";

export const AuditRecordSchema = z.object({
  time: z.number().describe("when the handler started, ms since the epoch"),
  service: z.string().min(1),
  version: z.string(),
  instance: z.string().describe("the instance that ran the handler"),
  endpoint: z.string(),
  caller: z.string().describe("the caller: its verified identity where the policy requires tokens, else as it named itself"),
  requestId: z.string().describe("the call's request id; also the JetStream message id"),
  traceId: z.string().describe("W3C trace id, or \"\" if the caller sent none"),
  status: z.string().describe("\"ok\" or the error code the handler's reply carried"),
  durationMs: z.number().nonnegative().describe("handler time, validation included"),
  policy: z.string().optional().describe("revision of the policy in force at the instance"),
});

export type AuditRecord = z.infer<typeof AuditRecordSchema>;

export const AUDIT_STREAM = "SVC_AUDIT";
export const AUDIT_SUBJECTS = `${AUDIT_ROOT}.>`;

export function auditSubject(service: string): string {
  return `${AUDIT_ROOT}.${service}`;
}

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;

/** maxAgeMs default 90 days, replicas 1, duplicateWindowMs 20 minutes, maxBytes none. */
export type AuditStreamOptions = StreamOptions;

/**
 * The duplicate window must outlast the writer's re-send horizon (audit/writer.ts,
 * 10 minutes by default): a record re-sent after the window closed would be stored twice.
 */
export const AUDIT_STREAM_DEFAULTS: Required<AuditStreamOptions> = {
  maxAgeMs: 90 * DAY_MS,
  replicas: 1,
  duplicateWindowMs: 20 * MINUTE_MS,
  maxBytes: -1,
};

const AUDIT_SPEC: StreamSpec = {
  name: AUDIT_STREAM,
  subjects: AUDIT_SUBJECTS,
  description: "svcmesh audit trail (svc.audit.<service>), one record per handled call",
  what: "audit records",
  label: "audit stream",
  defaults: AUDIT_STREAM_DEFAULTS,
};

export function ensureAuditStream(nc: NatsConnection, options: AuditStreamOptions = {}): Promise<StreamInfo> {
  return ensureStream(nc, AUDIT_SPEC, options);
}

/** BAD_REQUEST for audit stream options that cannot work; the duplicate window they give a stream this process creates. */
export function auditStreamWindowMs(options: AuditStreamOptions = {}): number {
  checkStreamOptions(AUDIT_SPEC, options);
  return createdDuplicateWindowMs(AUDIT_SPEC, options);
}

/** What one instance's records of one endpoint share. */
export type AuditRecordConstants = Pick<AuditRecord, "service" | "version" | "instance" | "endpoint">;
/** What changes from record to record. */
export type AuditRecordCall = Omit<AuditRecord, keyof AuditRecordConstants>;

/**
 * Encodes an endpoint's records (one per handled call): the fields they share are
 * encoded once, and each record is those bytes and its own fields under one msgpack map
 * header. The same map as encoding the whole record, keys in another order, at about
 * 60% of the cost.
 */
export class AuditRecordEncoder {
  /** The shared fields' key-value pairs, without their map header. */
  private readonly pairs: Uint8Array;
  private readonly count: number;

  constructor(constants: AuditRecordConstants) {
    const encoded = encodeBody(constants);
    this.count = encoded[0]! & 0x0f;
    this.pairs = encoded.subarray(1);
  }

  encode(call: AuditRecordCall): Uint8Array {
    const own = encodeBodyShared(call); // a fixmap: at most 7 fields
    const out = Buffer.allocUnsafe(this.pairs.length + own.length);
    out[0] = 0x80 | (this.count + (own[0]! & 0x0f));
    out.set(this.pairs, 1);
    out.set(own.subarray(1), 1 + this.pairs.length);
    return out;
  }
}

export type DecodedAudit = { ok: true; record: AuditRecord } | { ok: false; reason: string };

export function decodeAuditRecord(data: Uint8Array): DecodedAudit {
  let body: unknown;
  try {
    body = decodeBody(data);
  } catch (e) {
    return { ok: false, reason: `body is not msgpack: ${(e as Error).message}` };
  }
  const r = AuditRecordSchema.safeParse(body);
  if (r.success) return { ok: true, record: r.data };
  const issue = r.error.issues[0];
  return { ok: false, reason: `invalid audit record: ${issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "schema mismatch"}` };
}
