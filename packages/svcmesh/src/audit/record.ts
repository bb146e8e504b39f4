// Audit records: one per call that reached a handler, written by the instance that ran
// it to `svc.audit.<service>` and kept in the SVC_AUDIT stream. The JetStream message id
// (Nats-Msg-Id) is the call's request id, the same on every attempt, so a retried call
// is stored once (within the stream's duplicate window).
import type { NatsConnection, StreamInfo } from "nats";
import { z } from "zod";
import { ensureStream, type StreamOptions, type StreamSpec } from "../jetstream/stream.js";
import { AUDIT_ROOT } from "../subjects.js";
import { decodeBody } from "../wire.js";

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
