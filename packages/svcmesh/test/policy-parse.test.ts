// The policy document: the DESIGN.md example parses, and every kind of error is
// reported with its line and column. Pure: no NATS.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatPolicyErrors, isNkeyUserPublicKey, parsePolicy, policyJsonSchema, type PolicyError } from "../src/policy/index.ts";

const CLAIMS = "UB7P3EE5LR4P3MQPQRK7C3MR27EVUAYU65RKDAN54OHAMINCATBDUSD7";
const AUTH = "UC57EZN2RLGNP5NETTUVCX4QALG7XWHQ4DRIUDMI4HZ2L6SMPWPTADAT";
const PAYMENTS = "UBOYHG7ZGBVUY7V3C6GWNQAOHLBVVU5AP5FEKASRUQVS5L6Q4LHBVMW3";

// DESIGN.md's document, with real keys.
const EXAMPLE = `version: 1
identities:                        # registered by the operator, never self-asserted
  claims:   { key: ${CLAIMS}, roles: [CLAIMS_CLERK], clearances: [PII] }
  auth:     { key: ${AUTH} }
  payments: { key: ${PAYMENTS} }
defaults:
  allow: ["*"]                     # callers allowed where a service says nothing
  timeoutMs: 2000
  retry: { attempts: 2, backoffMs: 50, maxBackoffMs: 1000 }
  breaker: { errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeoutMs: 30000 }
  rateLimit: { rps: 1000, burst: 2000 }      # per caller, per service
services:
  payments:
    allow: [claims]                # deny everyone else
    rateLimits:
      claims: { rps: 50, burst: 100 }
      "*": { rps: 10 }
    traffic: { "2.1.0": 90, "2.2.0": 10 }    # canary weights by running version
    endpoints:
      reimburse:
        roles: [CLAIMS_CLERK]      # caller must hold one (from its identity entry)
        dataClass: PII             # caller must be cleared for it
        idempotent: true           # may be retried after a timeout
        timeoutMs: 1500
        maxConcurrent: 64          # bulkhead per instance
`;

function errorsOf(text: string): PolicyError[] {
  const r = parsePolicy(text);
  assert.equal(r.ok, false, "the document should be refused");
  return r.ok ? [] : r.errors;
}

/** The one error at `path` (exactly one expected). */
function only(errors: PolicyError[], path: string): PolicyError {
  const hits = errors.filter((e) => e.path === path);
  assert.equal(hits.length, 1, `one error at ${path}; got:\n${formatPolicyErrors(errors, "t.yaml")}`);
  return hits[0]!;
}

const HEAD = `version: 1
identities:
  claims: { key: ${CLAIMS}, roles: [CLAIMS_CLERK], clearances: [PII] }
`; // 3 lines: documents below start at line 4

describe("parsePolicy: valid documents", () => {
  test("the DESIGN.md example parses, typed", () => {
    const r = parsePolicy(EXAMPLE);
    assert.ok(r.ok, r.ok ? "" : formatPolicyErrors(r.errors));
    assert.equal(r.policy.version, 1);
    assert.deepEqual(r.policy.identities?.claims?.roles, ["CLAIMS_CLERK"]);
    assert.deepEqual(r.policy.defaults?.retry, { attempts: 2, backoffMs: 50, maxBackoffMs: 1000 });
    assert.deepEqual(r.policy.defaults?.breaker, { errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeoutMs: 30000 });
    assert.deepEqual(r.policy.services?.payments?.rateLimits, { claims: { rps: 50, burst: 100 }, "*": { rps: 10 } });
    assert.deepEqual(r.policy.services?.payments?.traffic, { "2.1.0": 90, "2.2.0": 10 });
    assert.deepEqual(r.policy.services?.payments?.endpoints?.reimburse, {
      roles: ["CLAIMS_CLERK"], dataClass: "PII", idempotent: true, timeoutMs: 1500, maxConcurrent: 64,
    });
    assert.deepEqual(r.warnings, []);
  });

  test("the smallest policy is `version: 1`", () => {
    const r = parsePolicy("version: 1\n");
    assert.ok(r.ok);
    assert.deepEqual(r.policy, { version: 1 });
  });

  test("anchors and aliases are resolved", () => {
    const r = parsePolicy(`${HEAD}services:
  a: { allow: &ops [claims] }
  b: { allow: *ops }
`);
    assert.ok(r.ok, r.ok ? "" : formatPolicyErrors(r.errors));
    assert.deepEqual(r.policy.services?.b?.allow, ["claims"]);
  });

  test("identities registered elsewhere may be named when the caller says so", () => {
    const text = `version: 1\nservices:\n  a: { allow: [ops] }\n`;
    assert.equal(parsePolicy(text).ok, false);
    assert.equal(parsePolicy(text, { knownIdentities: ["ops"] }).ok, true);
  });

  test("endpoints nobody can reach are warnings, with positions", () => {
    const r = parsePolicy(`${HEAD}services:
  grades:
    endpoints:
      read: { dataClass: FERPA }
      write: { roles: [REGISTRAR] }
`);
    assert.ok(r.ok);
    assert.deepEqual(r.warnings.map((w) => [w.line, w.path]), [
      [7, "services.grades.endpoints.read.dataClass"],
      [8, "services.grades.endpoints.write.roles"],
    ]);
    assert.match(r.warnings[0]!.message, /no identity is cleared for FERPA/);
  });
});

describe("parsePolicy: errors with line and column", () => {
  test("YAML syntax errors", () => {
    const errs = errorsOf(`version: 1
services:
  payments:
    allow: [claims
  other: 1
`);
    assert.ok(errs.length >= 1);
    assert.ok(errs.every((e) => e.path === ""));
    assert.ok(errs.some((e) => e.line >= 4), formatPolicyErrors(errs));
  });

  test("duplicate keys are an error, not last-one-wins", () => {
    const errs = errorsOf(`version: 1
services:
  a: { allow: ["*"] }
  a: { allow: [] }
`);
    assert.equal(errs[0]!.line, 4);
    assert.match(errs[0]!.message, /unique/i);
  });

  test("an empty document", () => {
    const errs = errorsOf("# nothing\n");
    assert.equal(errs.length, 1);
    assert.match(errs[0]!.message, /empty/);
  });

  test("a wrong or missing version", () => {
    const e = only(errorsOf("version: 2\n"), "version");
    assert.deepEqual([e.line, e.column], [1, 10]);
    const m = only(errorsOf("services: {}\n"), "version");
    assert.equal(m.line, 1);
  });

  test("unknown keys at every level, at the key, with a suggestion", () => {
    const errs = errorsOf(`${HEAD}defaults:
  alow: ["*"]
  retry: { attempts: 2, backof: 50 }
services:
  payments:
    allowed: [claims]
    endpoints:
      reimburse: { idempotent: true, dataclass: PII }
colour: blue
`);
    const a = only(errs, "defaults.alow");
    assert.deepEqual([a.line, a.column], [5, 3]);
    assert.match(a.message, /unknown key "alow" \(did you mean "allow"\?\)/);
    assert.equal(only(errs, "defaults.retry.backof").line, 6);
    assert.match(only(errs, "defaults.retry.backof").message, /backoffMs/);
    assert.equal(only(errs, "services.payments.allowed").line, 9);
    const d = only(errs, "services.payments.endpoints.reimburse.dataclass");
    assert.equal(d.line, 11);
    assert.match(d.message, /did you mean "dataClass"/);
    assert.equal(only(errs, "colour").line, 12);
    assert.equal(errs.length, 5);
  });

  test("wrong types and ranges point at the value", () => {
    const errs = errorsOf(`${HEAD}defaults:
  timeoutMs: fast
  retry: { attempts: 0 }
  breaker: { errorThresholdPercentage: 150 }
  rateLimit: { rps: -1 }
services:
  payments:
    endpoints:
      reimburse:
        idempotent: "yes"
        maxConcurrent: 0
`);
    const t = only(errs, "defaults.timeoutMs");
    assert.deepEqual([t.line, t.column], [5, 14]);
    assert.match(t.message, /expected number/);
    assert.deepEqual([only(errs, "defaults.retry.attempts").line, only(errs, "defaults.retry.attempts").column], [6, 22]);
    assert.equal(only(errs, "defaults.breaker.errorThresholdPercentage").line, 7);
    assert.equal(only(errs, "defaults.rateLimit.rps").line, 8);
    assert.equal(only(errs, "services.payments.endpoints.reimburse.idempotent").line, 13);
    assert.equal(only(errs, "services.payments.endpoints.reimburse.maxConcurrent").line, 14);
  });

  test("a missing required field points at its object", () => {
    const errs = errorsOf(`${HEAD}  auth: { roles: [X] }
`);
    const e = only(errs, "identities.auth.key");
    assert.equal(e.line, 4);
    assert.match(e.message, /required/);
  });

  test("bad versions and weights in traffic", () => {
    const errs = errorsOf(`${HEAD}services:
  payments:
    traffic:
      "v2.1.0": 90
      "^2.2": 5
      2.3.0: -1
      2.4.0: lots
`);
    const v = only(errs, 'services.payments.traffic["v2.1.0"]');
    assert.deepEqual([v.line, v.column], [7, 7]);
    assert.match(v.message, /not an exact version/);
    assert.equal(only(errs, 'services.payments.traffic["^2.2"]').line, 8);
    const w = only(errs, 'services.payments.traffic["2.3.0"]');
    assert.deepEqual([w.line, w.column], [9, 14]);
    assert.equal(only(errs, 'services.payments.traffic["2.4.0"]').line, 10);
  });

  test("traffic weights that add up to zero", () => {
    const e = only(errorsOf(`${HEAD}services:
  payments:
    traffic: { "2.1.0": 0, "2.2.0": 0 }
`), "services.payments.traffic");
    assert.equal(e.line, 6);
    assert.match(e.message, /more than 0/);
  });

  test("invalid and reserved names, at the key", () => {
    const errs = errorsOf(`${HEAD}  Claims_2: { key: ${AUTH} }
services:
  audit: {}
  pay.ments: {}
  payments:
    endpoints:
      "re imburse": {}
`);
    const n = only(errs, "identities.Claims_2");
    assert.deepEqual([n.line, n.column], [4, 3]);
    assert.match(only(errs, "services.audit").message, /reserved/);
    assert.equal(only(errs, "services.audit").line, 6);
    assert.equal(only(errs, 'services["pay.ments"]').line, 7);
    assert.equal(only(errs, 'services.payments.endpoints["re imburse"]').line, 10);
  });

  test("keys that are not nkey public user keys", () => {
    const errs = errorsOf(`version: 1
identities:
  a: { key: SUAM3OZ2ZCT4LP3MQO4EYNAFBRTUMZ5DXG3W5H2OGBUTGBHQ4B4P5PYVY4 }
  b: { key: ADQ66TAI7KYQ5SHCPVVV4MTXH7ZQSHQT52EMF36JWGTQ7BUNZ65VWHST }
  c: { key: UD...PUBLIC-NKEY... }
  d: { key: ${CLAIMS.slice(0, -1)}A }
`);
    assert.match(only(errs, "identities.a.key").message, /seed/);
    assert.deepEqual([only(errs, "identities.a.key").line, only(errs, "identities.a.key").column], [3, 13]);
    assert.match(only(errs, "identities.b.key").message, /another kind/);
    assert.equal(only(errs, "identities.c.key").line, 5);
    assert.equal(only(errs, "identities.d.key").line, 6, "a bad checksum is caught");
  });

  test("two identities with one key", () => {
    const e = only(errorsOf(`${HEAD}  clerk: { key: ${CLAIMS} }
`), "identities.clerk.key");
    assert.equal(e.line, 4);
    assert.match(e.message, /same key as identity "claims"/);
  });

  test("allow lists and rate limits may only name identities or \"*\"", () => {
    const errs = errorsOf(`${HEAD}defaults:
  allow: [claims, ops]
services:
  payments:
    allow: ["*", claimz]
    rateLimits:
      billing: { rps: 1 }
      "*": { rps: 2 }
    endpoints:
      reimburse: { allow: [claims, ghost] }
`);
    const o = only(errs, "defaults.allow[1]");
    assert.deepEqual([o.line, o.column], [5, 19]);
    assert.match(o.message, /unknown caller "ops"/);
    assert.equal(only(errs, "services.payments.allow[1]").line, 8);
    const b = only(errs, "services.payments.rateLimits.billing");
    assert.deepEqual([b.line, b.column], [10, 7]);
    assert.equal(only(errs, "services.payments.endpoints.reimburse.allow[1]").line, 13);
    assert.equal(errs.length, 4);
  });

  test("an invalid document is refused whole", () => {
    const r = parsePolicy(`${HEAD}services:
  good: { allow: ["*"] }
  bad: { allow: "*" }
`);
    assert.equal(r.ok, false);
    assert.equal("policy" in r, false);
  });
});

describe("formatPolicyErrors", () => {
  test("file:line:col: path: message", () => {
    const out = formatPolicyErrors([
      { line: 3, column: 5, path: "defaults.alow", message: 'unknown key "alow"' },
      { line: 1, column: 1, path: "", message: "bad YAML" },
    ], "policies.yaml");
    assert.equal(out, 'policies.yaml:3:5: defaults.alow: unknown key "alow"\npolicies.yaml:1:1: bad YAML');
  });

  test("errors come sorted by position", () => {
    const errs = errorsOf(`version: 3\ndefaults: { timeoutMs: -1 }\nextra: 1\n`);
    const lines = errs.map((e) => e.line);
    assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
  });
});

describe("keys and the published schema", () => {
  test("isNkeyUserPublicKey", () => {
    for (const k of [CLAIMS, AUTH, PAYMENTS]) assert.equal(isNkeyUserPublicKey(k), true);
    assert.equal(isNkeyUserPublicKey(CLAIMS.toLowerCase()), false);
    assert.equal(isNkeyUserPublicKey(CLAIMS.slice(1)), false);
    assert.equal(isNkeyUserPublicKey("U" + "A".repeat(55)), false);
  });

  test("the JSON Schema describes the document", () => {
    const s = policyJsonSchema() as { type?: string; properties?: Record<string, unknown>; additionalProperties?: unknown };
    assert.equal(s.type, "object");
    assert.deepEqual(Object.keys(s.properties ?? {}).sort(), ["defaults", "identities", "services", "version"]);
    assert.equal(s.additionalProperties, false);
    assert.doesNotThrow(() => JSON.stringify(s));
  });
});
