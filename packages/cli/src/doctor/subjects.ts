// Which of the mesh's subjects a JetStream stream's subject filter captures. A stream
// on request subjects answers every call it stores with a JetStream ack: the caller
// gets the ack as its reply, not the service's. One on reply subjects keeps every result.
import { inboxPrefixFor } from "svcmesh";
import { AUDIT_SUBJECTS, DEFAULT_INBOX_PREFIX, EVENTS_SUBJECTS, RESERVED_NAMES, SUBJECT_ROOT, TRACE_ALL } from "svcmesh/internal";

/** The NATS services protocol's subjects (discovery), not the library's. */
const SRV_SUBJECTS = "$SRV.>";
/** Its verbs, bare or followed by a service name and id: what instances answer. */
const SRV_FILTERS = ["PING", "INFO", "STATS"].flatMap((verb) => [`$SRV.${verb}`, `$SRV.${verb}.>`]);

export type MeshSubjects = "requests" | "discovery" | "traces" | "events" | "audit" | "replies";


/** What each kind is, for messages. */
export const MESH_SUBJECTS: Readonly<Record<MeshSubjects, string>> = {
  requests: `request subjects (${SUBJECT_ROOT}.<service>.<lane>.<endpoint>)`,
  discovery: `discovery requests (${SRV_SUBJECTS})`,
  traces: `trace records (${TRACE_ALL})`,
  events: `mesh events (${EVENTS_SUBJECTS})`,
  audit: `audit records (${AUDIT_SUBJECTS})`,
  replies: `replies (${DEFAULT_INBOX_PREFIX}.> and ${inboxPrefixFor("<service>")}.>)`,
};

/** Whether some subject matches both filters (`*` one token, `>` one or more). */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0; i < x.length && i < y.length; i++) {
    if (x[i] === ">" || y[i] === ">") return true;
    if (x[i] !== "*" && y[i] !== "*" && x[i] !== y[i]) return false;
  }
  return x.length === y.length;
}

/** The kinds of mesh subjects `filter` captures. */
export function meshSubjectsIn(filter: string): MeshSubjects[] {
  const out: MeshSubjects[] = [];
  // Requests have four tokens under svc.; the second is a service name, never a reserved one
  // (svc.trace.<service>.<endpoint> is a trace subject, not a request).
  const second = filter.split(".")[1];
  if (filtersOverlap(filter, `${SUBJECT_ROOT}.*.*.*`) && !(second !== undefined && RESERVED_NAMES.has(second))) out.push("requests");
  if (SRV_FILTERS.some((f) => filtersOverlap(filter, f))) out.push("discovery");
  if (filtersOverlap(filter, TRACE_ALL)) out.push("traces");
  if (filtersOverlap(filter, EVENTS_SUBJECTS)) out.push("events");
  if (filtersOverlap(filter, AUDIT_SUBJECTS)) out.push("audit");
  if (capturesReplies(filter)) out.push("replies");
  return out;
}

/**
 * Reply subjects are `<prefix>.<nuid>.<token>`: `_INBOX` or `_INBOX_<name>`, then 22
 * letters and digits. Wildcards are whole tokens, so a filter reaches them through its
 * first two tokens only.
 */
function capturesReplies(filter: string): boolean {
  const [first = "", second] = filter.split(".");
  // A service's private prefix is one token: `_INBOX_<name>`.
  const prefix = first === ">" || first === "*" || first === DEFAULT_INBOX_PREFIX || first.startsWith(inboxPrefixFor(""));
  const nuid = second === undefined ? first === ">" : second === "*" || second === ">" || /^[A-Za-z0-9]{22}$/.test(second);
  return prefix && nuid;
}
