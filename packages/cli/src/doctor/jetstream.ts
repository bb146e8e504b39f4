// Doctor checks of the server and its JetStream: version, cluster, JetStream on, the
// mesh's streams (SVC_EVENTS, SVC_AUDIT) as the library needs them, and no other stream
// on the mesh's subjects.
import type { JetStreamManager, NatsConnection, StreamInfo } from "nats";
import { AUDIT_STREAM, AUDIT_STREAM_DEFAULTS, AUDIT_SUBJECTS, EVENTS_STREAM, EVENTS_SUBJECTS, isMeshError, manager, minAuditWindowMs, storageGone, streamInfo } from "svcmesh/internal";
import { plural } from "../output.js";
import { error, type Finding, ok, skipped, warn } from "./report.js";
import { MESH_SUBJECTS, type MeshSubjects, meshSubjectsIn } from "./subjects.js";

/** JetStream as the other checks can use it (`unreadable`: mesh streams that could not be looked at, and why), or why they cannot. */
export type JetStreamView = { jsm: JetStreamManager; streams: StreamInfo[]; unreadable: Map<string, string> } | { why: string };

interface MeshStream {
  name: string;
  subjects: string;
  what: string;
  /** The kind of mesh subjects it is for. */
  kind: MeshSubjects;
}

const MESH_STREAMS: readonly MeshStream[] = [
  { name: EVENTS_STREAM, subjects: EVENTS_SUBJECTS, what: "mesh events", kind: "events" },
  { name: AUDIT_STREAM, subjects: AUDIT_SUBJECTS, what: "audit records", kind: "audit" },
];

/** Servers in the connected server's cluster (1: none), as it advertises them to clients; undefined if it does not say. */
function clusterSize(nc: NatsConnection): number | undefined {
  const i = nc.info;
  if (!i?.cluster) return 1;
  return i.connect_urls?.length;
}

export async function serverChecks(nc: NatsConnection): Promise<{ findings: Finding[]; js: JetStreamView }> {
  const i = nc.info;
  const size = clusterSize(nc);
  const where = !i?.cluster ? "not clustered" : `cluster ${i.cluster}${size === undefined ? "" : ` of ${plural(size, "server")}`}`;
  const findings = [ok("server", `nats-server ${i?.version ?? "(version unknown)"}${i?.server_name && i.server_name !== i.server_id ? ` (${i.server_name})` : ""}, ${where}`)];
  let jsm: JetStreamManager;
  try {
    jsm = await manager(nc);
  } catch (e) {
    // The library's own reading of the failure: JetStream off, or not reachable.
    const off = storageGone(e) === "no_jetstream";
    const message = ((isMeshError(e) ? e.cause : e) as Error)?.message ?? String(e);
    const why = off ? "JetStream is not enabled" : `JetStream is not reachable (${message})`;
    findings.push(off
      ? error("jetstream", "not enabled on the server (or for this account): the policy, mesh events and audit records cannot be stored; the mesh still works, as an open one (no policy)", "enable JetStream in the server's config (jetstream { store_dir: ... }), and for the account if it has accounts")
      : error("jetstream", `not reachable: ${message}`, "check the server's JetStream and this user's permissions for $JS.API.>"));
    return { findings, js: { why } };
  }
  const streams: StreamInfo[] = [];
  try {
    for await (const s of jsm.streams.list()) streams.push(s);
  } catch (e) {
    const message = (e as Error)?.message ?? String(e);
    findings.push(error("jetstream", `enabled, but its streams cannot be listed: ${message}`, "run doctor with operator credentials (it needs $JS.API.STREAM.LIST and STREAM.INFO)"));
    return { findings, js: { why: "the streams cannot be listed" } };
  }
  // A listing can miss a stream whose group is changing (replicas being added, a new
  // leader): a mesh stream not listed is asked for by name before it is called missing.
  const unreadable = new Map<string, string>();
  for (const m of MESH_STREAMS) {
    if (streams.some((s) => s.config.name === m.name)) continue;
    try {
      const info = await streamInfo(jsm, m.name);
      if (info) streams.push(info);
    } catch (e) {
      unreadable.set(m.name, (e as Error)?.message ?? String(e));
    }
  }
  const listed = streams.length;
  findings.push(ok("jetstream", `enabled, ${plural(listed, "stream")} in this account`));
  return { findings, js: { jsm, streams, unreadable } };
}

/** SVC_EVENTS and SVC_AUDIT: there, on exactly the library's subjects, a long enough audit duplicate window, replicas that fit the cluster. */
export function meshStreamChecks(nc: NatsConnection, js: JetStreamView): Finding[] {
  const out: Finding[] = [];
  for (const spec of MESH_STREAMS) {
    const check = `stream ${spec.name}`;
    const windowCheck = `${spec.name} duplicate window`;
    const replicasCheck = `${spec.name} replicas`;
    const audit = spec.name === AUDIT_STREAM;
    /** The checks that need the stream's config, skipped for `why`. */
    const skipRest = (why: string): Finding[] => [...(audit ? [skipped(windowCheck, why)] : []), skipped(replicasCheck, why)];
    if ("why" in js) {
      out.push(skipped(check, js.why), ...skipRest(js.why));
      continue;
    }
    const stream = js.streams.find((s) => s.config.name === spec.name);
    const unreadable = js.unreadable.get(spec.name);
    if (unreadable !== undefined) {
      out.push(error(check, `cannot be looked at: ${unreadable}`, "run doctor again; if it persists, look at the JetStream cluster (nats server report jetstream)"));
      out.push(...skipRest(`${spec.name} cannot be looked at`));
      continue;
    }
    if (!stream) {
      out.push(warn(check, `missing: ${spec.what} are not stored`, `\`svcmesh apply <policy file>\` creates it (with ${spec.subjects}); under a broker config from nats-config, services may not create it themselves`));
      out.push(...skipRest(`${spec.name} does not exist`));
      continue;
    }
    out.push(subjectsFinding(check, spec, stream.config.subjects ?? []));
    if (audit) out.push(auditWindowFinding(windowCheck, stream));
    out.push(replicasFinding(replicasCheck, nc, stream));
  }
  return out;
}

function subjectsFinding(check: string, spec: MeshStream, subjects: readonly string[]): Finding {
  const extra = subjects.filter((s) => s !== spec.subjects);
  if (extra.length > 0) {
    const kinds = new Set(extra.flatMap(meshSubjectsIn).filter((k) => k !== spec.kind));
    const effects = [...kinds].map(effectOf);
    return error(check, `captures ${extra.join(", ")} besides ${spec.subjects}${effects.length > 0 ? `: ${effects.join("; ")}` : `: it stores messages that are not ${spec.what}`}`,
      `nats stream edit ${spec.name} --subjects '${spec.subjects}' (the library's subjects only)`);
  }
  if (!subjects.includes(spec.subjects)) {
    return warn(check, `does not capture ${spec.subjects}: ${spec.what} are not stored`, `\`svcmesh apply <policy file>\` adds ${spec.subjects} to it`);
  }
  return ok(check, `captures exactly ${spec.subjects}`);
}

/** What a stream on these subjects does to the mesh. */
function effectOf(kind: MeshSubjects): string {
  switch (kind) {
    case "requests": return `it captures ${MESH_SUBJECTS.requests}: it stores calls and answers each caller with a JetStream ack instead of the service's reply`;
    case "discovery": return `it captures ${MESH_SUBJECTS.discovery}: discovery requests get a JetStream ack among their answers`;
    case "traces": return `it stores ${MESH_SUBJECTS.traces}, one per call`;
    case "events": return `it stores ${MESH_SUBJECTS.events}, which belong in ${EVENTS_STREAM} (the server refuses a stream overlapping another, so ${EVENTS_STREAM} cannot be created while it does)`;
    case "audit": return `it stores ${MESH_SUBJECTS.audit}, which belong in ${AUDIT_STREAM} (the server refuses a stream overlapping another, so ${AUDIT_STREAM} cannot be created while it does)`;
    case "replies": return `it stores ${MESH_SUBJECTS.replies}: every call's result (personal data included) and every JetStream API answer, kept where the services' own permissions do not reach`;
  }
}

function auditWindowFinding(check: string, stream: StreamInfo): Finding {
  const windowMs = Math.floor(stream.config.duplicate_window / 1e6);
  const needMs = minAuditWindowMs();
  if (windowMs >= needMs) return ok(check, `${duration(windowMs)}, at least the ${duration(needMs)} audit writers need (their default re-send horizon and a margin)`);
  return error(check, `${duration(windowMs)}, shorter than the ${duration(needMs)} audit writers need (their default re-send horizon and a margin): a record re-sent after the window would be stored twice, so instances cut their re-sends short to fit it and lose records in a longer JetStream outage (each logs an error)`,
    `nats stream edit ${AUDIT_STREAM} --dupe-window ${duration(Math.max(needMs, AUDIT_STREAM_DEFAULTS.duplicateWindowMs))} (the library's default)`);
}

function replicasFinding(check: string, nc: NatsConnection, stream: StreamInfo): Finding {
  const replicas = stream.config.num_replicas || 1;
  const size = clusterSize(nc);
  const copies = plural(replicas, "replica");
  if (size === 1) return ok(check, `${copies} (the server is not clustered)`);
  const cluster = size === undefined ? "a cluster" : `a cluster of ${size}`;
  if (replicas === 1) {
    return warn(check, `1 replica on ${cluster}: its messages are lost when the server holding them is lost`, `nats stream edit ${stream.config.name} --replicas 3`);
  }
  return ok(check, `${copies} on ${cluster}`);
}

/** Streams other than the mesh's that capture mesh subjects. */
export function otherStreamChecks(js: JetStreamView): Finding[] {
  const check = "other streams";
  if ("why" in js) return [skipped(check, js.why)];
  const others = js.streams.filter((s) => !MESH_STREAMS.some((m) => m.name === s.config.name));
  const out: Finding[] = [];
  for (const s of others) {
    const hits = (s.config.subjects ?? []).map((subject) => ({ subject, kinds: meshSubjectsIn(subject) })).filter((h) => h.kinds.length > 0);
    if (hits.length === 0) continue;
    const kinds = new Set(hits.flatMap((h) => h.kinds));
    const effects = [...kinds].map(effectOf);
    const name = s.config.name;
    const subjects = hits.map((h) => h.subject).join(", ");
    const text = `captures ${subjects}: ${effects.join("; ")}`;
    const hint = `take the mesh's subjects out of ${name} (nats stream edit ${name} --subjects ...) or delete it (nats stream rm ${name})`;
    // A stream of trace records only answers nothing (traces are plain publishes): storing them may be meant.
    out.push(kinds.size === 1 && kinds.has("traces") ? warn(`stream ${name}`, text, `${hint}, unless storing every trace record is meant`) : error(`stream ${name}`, text, hint));
  }
  if (out.length === 0) out.push(ok(check, others.length === 0 ? "there are none" : `none of the ${plural(others.length, "other stream")} captures mesh subjects`));
  return out;
}

/** 20m, 10m5s, 55s, 1h30m, 250ms. */
function duration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const parts: string[] = [];
  let s = Math.floor(ms / 1000);
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.join("");
}
