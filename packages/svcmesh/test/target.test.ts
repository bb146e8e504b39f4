import assert from "node:assert/strict";
import { test } from "node:test";
import { isMeshError, parseTarget } from "svcmesh";
import { resolveRoute, type RunningInstance } from "svcmesh/internal";

const running: RunningInstance[] = [
  { id: "a", version: "1.4.0", endpoints: ["old"] },
  { id: "b", version: "2.0.0", endpoints: ["reimburse"] },
  { id: "c", version: "2.1.0", endpoints: ["reimburse", "refund"] },
  { id: "d", version: "2.1.0", endpoints: ["reimburse", "refund"] },
];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    assert.ok(isMeshError(e), `expected a MeshError, got ${String(e)}`);
    return e.code;
  }
  return undefined;
}

test("parses names and semver ranges", () => {
  assert.deepEqual(parseTarget("payments"), { text: "payments", service: "payments", range: undefined });
  assert.equal(parseTarget("payments@2").range, "2");
  assert.equal(parseTarget("payments@^2.1").range, "^2.1");
  assert.equal(parseTarget("payments@2.1.0").range, "2.1.0");
});

test("rejects bad targets with BAD_REQUEST", () => {
  for (const bad of ["", "Payments", "pay.ments", "payments@", "payments@banana", "trace", "a@1@2", "svc>x"]) {
    assert.equal(codeOf(() => parseTarget(bad)), "BAD_REQUEST", bad);
  }
});

test("a bare name goes to the highest major's lane", () => {
  const r = resolveRoute(parseTarget("payments"), running);
  assert.equal(r.lane, "svc.payments.v2");
  assert.deepEqual([...r.endpoints].sort(), ["refund", "reimburse"]);
});

test("a major range covering every instance of that major uses the major lane", () => {
  assert.equal(resolveRoute(parseTarget("payments@2"), running).lane, "svc.payments.v2");
  assert.equal(resolveRoute(parseTarget("payments@1"), running).lane, "svc.payments.v1");
});

test("a range that excludes some instances of the major pins the best exact version", () => {
  const r = resolveRoute(parseTarget("payments@^2.1"), running);
  assert.equal(r.lane, "svc.payments.2_1_0");
  assert.deepEqual(r.versions, ["2.1.0"]);
  assert.equal(resolveRoute(parseTarget("payments@2.0.0"), running).lane, "svc.payments.2_0_0");
});

test("no matching version is NOT_FOUND, nothing running is NO_RESPONDERS", () => {
  assert.equal(codeOf(() => resolveRoute(parseTarget("payments@3"), running)), "NOT_FOUND");
  assert.equal(codeOf(() => resolveRoute(parseTarget("payments"), [])), "NO_RESPONDERS");
});
