// Doctor's policy findings from its two reads: the policy in force (getPolicy) and the
// bucket's latest value, read just after. A valid revision applied between the two reads
// is the one in force, not "a value that does not parse"; an invalid latest value is one.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parsePolicy, type StoredPolicy } from "svcmesh/internal";
import { policyFindings } from "../dist/doctor/policy.js";

const text = (services: string[]) => `version: 1\nservices:\n${services.map((name) => `  ${name}:\n    allow: ["*"]\n`).join("")}`;

function stored(revision: number, services: string[]): StoredPolicy {
  const parsed = parsePolicy(text(services));
  assert.ok(parsed.ok);
  return { revision, text: text(services), policy: parsed.policy };
}

test("a valid revision applied between doctor's two reads is reported as the policy in force", () => {
  const { findings, policy } = policyFindings(stored(3, ["payments"]), { revision: 4, operation: "PUT", text: text(["payments", "ledger"]) });
  assert.deepEqual(findings.map((f) => f.status), ["ok"]);
  assert.match(findings[0]!.message, /^revision 4, sha256 .*rules for 2 services/);
  assert.ok("stored" in policy && policy.stored?.revision === 4);
});

test("a latest value that does not parse is an error, and the revision before it stays in force", () => {
  const { findings, policy } = policyFindings(stored(3, ["payments"]), { revision: 4, operation: "PUT", text: "version: 1\nservices: [" });
  assert.equal(findings[0]!.status, "error");
  assert.match(findings[0]!.message, /revision 4\) is not a valid policy \(line \d+:\d+: .*\), so every instance ignores it: revision 3 stays in force/);
  assert.ok("stored" in policy && policy.stored?.revision === 3);
});

test("no value at all, or a removed one, is the open mesh", () => {
  assert.match(policyFindings(undefined, null).findings[0]!.message, /^none applied: the mesh is open/);
  assert.match(policyFindings(undefined, { revision: 5, operation: "DEL", text: "" }).findings[0]!.message, /^none applied \(removed at revision 5\)/);
});
