// Doctor checks of the policy: its bucket, the document in force (revision, sha), and
// whether the bucket's latest value is one that parses (a value written without
// `svcmesh apply` that does not parse is ignored by every instance: the one before stays).
import type { NatsConnection } from "nats";
import { getPolicy, parsePolicy, POLICY_BUCKET, POLICY_KEY, policySha, type StoredPolicy } from "svcmesh/internal";
import { plural } from "../output.js";
import type { JetStreamView } from "./jetstream.js";
import { error, type Finding, ok, skipped, warn } from "./report.js";

/** The policy in force (undefined: none, the mesh is open), or why it is not known. */
export type PolicyView = { stored: StoredPolicy | undefined } | { why: string };

const APPLY_HINT = "write a policy document and `svcmesh apply` it (`svcmesh policy schema` gives its JSON Schema)";

export async function policyChecks(nc: NatsConnection, js: JetStreamView): Promise<{ findings: Finding[]; policy: PolicyView }> {
  if ("why" in js) {
    // Without JetStream no policy can be stored or read: every instance runs open.
    return { findings: [skipped("policy", `${js.why}: no policy can be stored, so the mesh is open`)], policy: { stored: undefined } };
  }
  if (!js.streams.some((s) => s.config.name === `KV_${POLICY_BUCKET}`)) {
    return { findings: [warn("policy", `none applied (no ${POLICY_BUCKET} bucket): the mesh is open, every caller may call every service`, APPLY_HINT)], policy: { stored: undefined } };
  }
  let stored: StoredPolicy | undefined;
  let latest: LatestValue | null;
  try {
    stored = await getPolicy(nc);
    const entry = await (await nc.jetstream().views.kv(POLICY_BUCKET, { bindOnly: true })).get(POLICY_KEY);
    latest = entry && { revision: entry.revision, operation: entry.operation, text: new TextDecoder().decode(entry.value) };
  } catch (e) {
    const message = (e as Error)?.message ?? String(e);
    return { findings: [error("policy", `cannot be read from ${POLICY_BUCKET}: ${message}`, "run doctor with operator credentials (it reads the bucket as services do)")], policy: { why: "the policy cannot be read" } };
  }
  return policyFindings(stored, latest);
}

/** The bucket's latest value for the policy key, as read. */
export interface LatestValue {
  revision: number;
  operation: string;
  text: string;
}

/**
 * Findings from the policy in force (`stored`, what getPolicy() found) and the bucket's
 * latest value, read just after it. A latest value newer than `stored` that parses was
 * applied between the two reads: it is the one in force, not an invalid one.
 */
export function policyFindings(stored: StoredPolicy | undefined, latest: LatestValue | null): { findings: Finding[]; policy: PolicyView } {
  const findings: Finding[] = [];
  if (latest && latest.operation === "PUT" && latest.revision !== stored?.revision) {
    const parsed = parsePolicy(latest.text);
    if (parsed.ok && latest.revision > (stored?.revision ?? 0)) {
      stored = { revision: latest.revision, text: latest.text, policy: parsed.policy };
    } else if (!parsed.ok) {
      const first = parsed.errors[0];
      const why = first ? `line ${first.line}:${first.column}: ${first.path ? `${first.path}: ` : ""}${first.message}` : "it does not parse";
      findings.push(error("policy", `the latest value in ${POLICY_BUCKET} (revision ${latest.revision}) is not a valid policy (${why}), so every instance ignores it: ${stored ? `revision ${stored.revision} stays in force` : "no policy is in force, the mesh is open"}`,
        "fix the document and `svcmesh apply` it (apply validates first; this value was written some other way)"));
    }
  } else if (!stored) {
    const removed = latest && latest.operation !== "PUT" ? ` (removed at revision ${latest.revision})` : "";
    findings.push(warn("policy", `none applied${removed}: the mesh is open, every caller may call every service`, APPLY_HINT));
  }
  if (stored) {
    const p = stored.policy;
    if (findings.length === 0) {
      findings.push(ok("policy", `revision ${stored.revision}, sha256 ${policySha(stored.text)}: ${plural(Object.keys(p.identities ?? {}).length, "identity", "identities")}, rules for ${plural(Object.keys(p.services ?? {}).length, "service")}`));
    }
    const parsed = parsePolicy(stored.text);
    const warnings = parsed.ok ? parsed.warnings : [];
    if (warnings.length > 0) {
      findings.push(warn("policy warnings", warnings.map((w) => `${w.path ? `${w.path}: ` : ""}${w.message}`).join("; "), "`svcmesh policy show`, then fix the roles or clearances and `svcmesh apply` it"));
    }
  }
  return { findings, policy: { stored } };
}
