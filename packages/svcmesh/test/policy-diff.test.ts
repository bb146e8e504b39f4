// Diffs between policy documents (for `svcmesh policy diff`). Pure: no NATS.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { diffPolicies, formatDiff, formatPolicyErrors, parsePolicy, type PolicyDocument } from "../src/policy/index.ts";

const CLAIMS = "UB7P3EE5LR4P3MQPQRK7C3MR27EVUAYU65RKDAN54OHAMINCATBDUSD7";
const AUTH = "UC57EZN2RLGNP5NETTUVCX4QALG7XWHQ4DRIUDMI4HZ2L6SMPWPTADAT";

function policy(text: string): PolicyDocument {
  const r = parsePolicy(text);
  assert.ok(r.ok, r.ok ? "" : formatPolicyErrors(r.errors));
  return r.policy;
}

const A = policy(`version: 1
identities:
  claims: { key: ${CLAIMS}, roles: [CLAIMS_CLERK] }
  auth: { key: ${AUTH} }
defaults:
  timeoutMs: 2000
  retry: { attempts: 2, backoffMs: 50, maxBackoffMs: 1000 }
services:
  payments:
    allow: [claims]
    traffic: { "2.1.0": 90, "2.2.0": 10 }
    endpoints:
      reimburse: { idempotent: true, timeoutMs: 1500 }
`);

const B = policy(`version: 1
identities:
  claims: { key: ${CLAIMS}, roles: [CLAIMS_CLERK], clearances: [PII] }
defaults:
  timeoutMs: 2500
  retry: { attempts: 2, backoffMs: 50, maxBackoffMs: 1000 }
services:
  payments:
    allow: [claims, "*"]
    traffic: { "2.1.0": 50, "2.2.0": 50 }
    endpoints:
      reimburse: { idempotent: true, timeoutMs: 1500, dataClass: PII }
  grades: { allow: [] }
`);

describe("diffPolicies", () => {
  test("identical documents: no changes", () => {
    assert.deepEqual(diffPolicies(A, structuredClone(A)), []);
    assert.equal(formatDiff([]), "no changes");
  });

  test("added, removed and changed leaves, with before and after", () => {
    const changes = diffPolicies(A, B);
    assert.deepEqual(changes, [
      { path: ["identities", "claims", "clearances"], kind: "added", after: ["PII"] },
      { path: ["identities", "auth"], kind: "removed", before: { key: AUTH } },
      { path: ["defaults", "timeoutMs"], kind: "changed", before: 2000, after: 2500 },
      { path: ["services", "payments", "allow"], kind: "changed", before: ["claims"], after: ["claims", "*"] },
      { path: ["services", "payments", "traffic", "2.1.0"], kind: "changed", before: 90, after: 50 },
      { path: ["services", "payments", "traffic", "2.2.0"], kind: "changed", before: 10, after: 50 },
      { path: ["services", "payments", "endpoints", "reimburse", "dataClass"], kind: "added", after: "PII" },
      { path: ["services", "grades"], kind: "added", after: { allow: [] } },
    ]);
  });

  test("from nothing applied: everything is added", () => {
    const changes = diffPolicies(undefined, A);
    assert.deepEqual(changes.map((c) => [c.path.join("."), c.kind]), [
      ["version", "added"], ["identities", "added"], ["defaults", "added"], ["services", "added"],
    ]);
  });

  test("formatDiff: one line per change", () => {
    assert.equal(formatDiff(diffPolicies(A, B)), [
      '+ identities.claims.clearances: ["PII"]',
      `- identities.auth: {"key":"${AUTH}"}`,
      "~ defaults.timeoutMs: 2000 → 2500",
      '~ services.payments.allow: ["claims"] → ["claims","*"]',
      '~ services.payments.traffic["2.1.0"]: 90 → 50',
      '~ services.payments.traffic["2.2.0"]: 10 → 50',
      '+ services.payments.endpoints.reimburse.dataClass: "PII"',
      '+ services.grades: {"allow":[]}',
    ].join("\n"));
  });
});
