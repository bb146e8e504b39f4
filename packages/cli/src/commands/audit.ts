// svcmesh audit: who called what, from the SVC_AUDIT stream the serving instances
// write (one record per handled call, stored once even when the call was retried).
// Reads through an ephemeral ordered consumer up to what was stored when it started,
// then exits. It never creates the stream: an operator's read must not change the mesh.
import type { Command } from "commander";
import type { JetStreamManager, JsMsg, NatsConnection, StreamInfo } from "nats";
import { AUDIT_ROOT, AUDIT_STREAM, type AuditRecord, auditSubject, decodeAuditRecord } from "svcmesh/internal";
import { positiveCount, serviceName } from "../args.js";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { CliError } from "../errors.js";
import { globalOptions } from "../options.js";
import { formatTable, printable, printLine, toJson } from "../output.js";
import { stdoutGone } from "../stdout.js";
import { formatMs, parseSince } from "../time.js";

interface AuditOptions {
  service?: string;
  caller?: string;
  /** ms since the epoch */
  since?: number;
  limit?: number;
}

/** JetStream's "stream not found" API error. */
const STREAM_NOT_FOUND = 10059;

function apiCode(e: unknown): number | undefined {
  return (e as { api_error?: { err_code?: number } })?.api_error?.err_code;
}

export function registerAudit(program: Command): void {
  program
    .command("audit")
    .description("list audit records: who called which endpoint, when, with what outcome")
    .option("--service <name>", "only calls handled by this service", serviceName)
    .option("--caller <name>", "only calls made by this caller")
    .option("--since <when>", "start at a time: a duration ago (30s, 15m, 1h, 2d) or an ISO date", parseSince)
    .option("--limit <n>", "only the newest n matching records", positiveCount)
    .addHelpText("after", `
Records come from the JetStream stream ${AUDIT_STREAM} (subjects ${AUDIT_ROOT}.<service>),
written by the instance that ran each handler: one per call that reached a handler,
stored once per request id even when the call was retried. Without --since, every
stored record is read (kept 90 days by default): with --limit alone the command
still reads them all to find the newest, so give --since on a busy mesh. Records are
listed oldest first, up to the last one stored when the command started. The
command never creates the stream: if it does not exist, it fails (exit 1).

Human output: a table TIME (UTC, when the handler started), CALLER, SERVICE.ENDPOINT,
STATUS (ok or the error code of the reply), DURATION (handler time), REQUEST-ID.
With --json: one JSON object per line: {time, service, version, instance, endpoint,
caller, requestId, traceId, status, durationMs, policy?}.

Examples:
  $ svcmesh audit --service payments --since 1h
  TIME                      CALLER  SERVICE.ENDPOINT    STATUS         DURATION  REQUEST-ID
  2026-01-05T10:00:01.002Z  claims  payments.reimburse  ok             1.20ms    8c1f…
  2026-01-05T10:00:02.140Z  claims  payments.reimburse  HANDLER_ERROR  0.31ms    9d02…
  $ svcmesh audit --caller claims --limit 20 --json`)
    .action(async (opts: AuditOptions, command: Command) => {
      const globals = globalOptions(command);
      await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => listAudit(mesh.nc, opts, globals.json));
    });
}

async function listAudit(nc: NatsConnection, opts: AuditOptions, json: boolean): Promise<void> {
  const stream = await auditStream(nc);
  const lastSeq = stream.state.last_seq;
  const records: AuditRecord[] = [];
  const keep = (r: AuditRecord): void => {
    if (opts.caller !== undefined && r.caller !== opts.caller) return;
    if (opts.limit === undefined && json) return printLine(toJson(r, false)); // nothing to hold back
    records.push(r);
    // Trimmed now and then, not per record: the newest `limit` are what is left at the end.
    if (opts.limit !== undefined && records.length >= 2 * opts.limit + 1024) records.splice(0, records.length - opts.limit);
  };

  if (stream.state.messages > 0) {
    const consumer = await nc.jetstream().consumers.get(AUDIT_STREAM, {
      filterSubjects: opts.service === undefined ? `${AUDIT_ROOT}.>` : auditSubject(opts.service),
      // An ordered consumer starts at the first message unless given a start time.
      ...(opts.since === undefined ? {} : { opt_start_time: new Date(opts.since).toISOString() }),
    });
    if ((await consumer.info()).num_pending > 0) {
      const messages = await consumer.consume({ max_messages: 256 });
      for await (const m of messages) {
        // Listed up to what was stored when the command started.
        if (m.seq > lastSeq) break;
        const d = decodeAuditRecord(m.data);
        if (d.ok) keep(d.record);
        else skipped(m, d.reason, json);
        if (m.info.pending === 0 || m.seq === lastSeq || stdoutGone()) break;
      }
      await messages.close();
    }
  }

  if (opts.limit !== undefined) records.splice(0, Math.max(0, records.length - opts.limit));
  if (json) {
    for (const r of records) printLine(toJson(r, false));
    return;
  }
  if (records.length === 0) return printLine("no audit records");
  printLine(formatTable(
    ["TIME", "CALLER", "SERVICE.ENDPOINT", "STATUS", "DURATION", "REQUEST-ID"],
    records.map((r) => [new Date(r.time).toISOString(), r.caller, `${r.service}.${r.endpoint}`, r.status, formatMs(r.durationMs), r.requestId]),
  ));
}

/** The stream's info; a missing stream or JetStream is a one-line failure, never created. */
async function auditStream(nc: NatsConnection): Promise<StreamInfo> {
  let jsm: JetStreamManager;
  try {
    jsm = await nc.jetstreamManager();
  } catch (e) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (code === "503" || /jetstream not enabled/i.test(String(message))) {
      throw new CliError("no audit records: JetStream is not enabled on the NATS server (or for this account)", "UNAVAILABLE");
    }
    throw new CliError(`no audit records: JetStream is not reachable: ${String(message ?? e)}`, "UNAVAILABLE");
  }
  try {
    return await jsm.streams.info(AUDIT_STREAM);
  } catch (e) {
    if (apiCode(e) === STREAM_NOT_FOUND) {
      throw new CliError(`no audit records: the stream ${AUDIT_STREAM} does not exist (no service has written one yet, or JetStream is off)`, "NOT_FOUND");
    }
    throw new CliError(`cannot read the stream ${AUDIT_STREAM}: ${(e as Error).message}`, "UNAVAILABLE");
  }
}

function skipped(m: JsMsg, reason: string, json: boolean): void {
  process.stderr.write(json
    ? toJson({ skipped: { seq: m.seq, subject: m.subject, reason } }, false) + "\n"
    : printable(`svcmesh: skipping malformed audit record #${m.seq} on ${m.subject}: ${reason}`) + "\n");
}
