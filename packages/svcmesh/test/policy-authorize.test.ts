// Authorization decisions and settings from a policy document. Pure: no NATS.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { mergeCallSettings, DEFAULT_CALL_SETTINGS } from "../src/settings.ts";
import { callGrants, compileAuthorizer, formatPolicyErrors, parsePolicy, rateLimitFor, settingsFor, type PolicyDocument } from "../src/policy/index.ts";

const K = {
  claims: "UB7P3EE5LR4P3MQPQRK7C3MR27EVUAYU65RKDAN54OHAMINCATBDUSD7",
  auth: "UC57EZN2RLGNP5NETTUVCX4QALG7XWHQ4DRIUDMI4HZ2L6SMPWPTADAT",
  payments: "UBOYHG7ZGBVUY7V3C6GWNQAOHLBVVU5AP5FEKASRUQVS5L6Q4LHBVMW3",
  registrar: "UDUHVT6NNUQVXHF7WJKRD7MUW6C4J7GZPGXI7E75NFNYNFBWFX5OV5D2",
};

function policy(text: string): PolicyDocument {
  const r = parsePolicy(text);
  assert.ok(r.ok, r.ok ? "" : formatPolicyErrors(r.errors));
  return r.policy;
}

const P = policy(`version: 1
identities:
  claims:    { key: ${K.claims}, roles: [CLAIMS_CLERK], clearances: [PII] }
  auth:      { key: ${K.auth} }
  payments:  { key: ${K.payments}, roles: [AUDITOR] }
  registrar: { key: ${K.registrar}, roles: [REGISTRAR], clearances: [FERPA, PII] }
defaults:
  allow: ["*"]
  timeoutMs: 2000
  retry: { attempts: 2, backoffMs: 50, maxBackoffMs: 1000 }
  breaker: { errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeoutMs: 30000 }
  rateLimit: { rps: 1000, burst: 2000 }
services:
  payments:
    allow: [claims]
    timeoutMs: 3000
    retry: { attempts: 3 }
    rateLimits:
      claims: { rps: 50, burst: 100 }
      "*": { rps: 10 }
    traffic: { "2.1.0": 90, "2.2.0": 10 }
    endpoints:
      reimburse:
        roles: [CLAIMS_CLERK]
        dataClass: PII
        idempotent: true
        timeoutMs: 1500
        maxConcurrent: 64
      health:
        allow: ["*"]
      audit-log:
        allow: [payments, registrar]
        roles: [AUDITOR, REGISTRAR]
  grades:
    endpoints:
      transcript: { dataClass: FERPA }
      publish: { allow: [] }
  locked:
    allow: []
`);

describe("compileAuthorizer", () => {
  const a = compileAuthorizer(P);

  test("service allow list: named callers only", () => {
    assert.deepEqual(a.check("claims", "payments", "refund"), { allowed: true });
    const d = a.check("auth", "payments", "refund");
    assert.equal(d.allowed, false);
    assert.match(!d.allowed ? d.reason : "", /"auth" may not call payments\.refund: services\.payments\.allow allows claims/);
    assert.equal(a.check("stranger", "payments", "refund").allowed, false);
  });

  test("an endpoint's allow list replaces the service's (wider or narrower)", () => {
    assert.equal(a.check("auth", "payments", "health").allowed, true, "opened to everyone");
    assert.equal(a.check("stranger", "payments", "health").allowed, true, "\"*\" also matches callers without an identity entry");
    assert.equal(a.check("claims", "payments", "audit-log").allowed, false, "claims is in the service list, not the endpoint's");
    assert.equal(a.check("payments", "payments", "audit-log").allowed, true);
  });

  test("required roles: the caller must hold one, from its identity entry", () => {
    assert.equal(a.check("registrar", "payments", "audit-log").allowed, true, "REGISTRAR is one of the roles");
    const p2 = compileAuthorizer(policy(`version: 1
identities:
  claims: { key: ${K.claims}, roles: [CLAIMS_CLERK], clearances: [PII] }
  auth:   { key: ${K.auth}, clearances: [PII] }
services:
  payments:
    endpoints:
      reimburse: { roles: [CLAIMS_CLERK], dataClass: PII }
`));
    assert.equal(p2.check("claims", "payments", "reimburse").allowed, true);
    const d = p2.check("auth", "payments", "reimburse");
    assert.equal(d.allowed, false);
    assert.match(!d.allowed ? d.reason : "", /requires one of the roles CLAIMS_CLERK/);
    const u = p2.check("stranger", "payments", "reimburse");
    assert.equal(u.allowed, false, "a caller without an identity entry holds no roles");
  });

  test("data classes: FERPA only for callers cleared for it", () => {
    assert.equal(a.check("registrar", "grades", "transcript").allowed, true);
    const d = a.check("claims", "grades", "transcript");
    assert.equal(d.allowed, false, "PII clearance is not FERPA clearance");
    assert.match(!d.allowed ? d.reason : "", /FERPA data, and "claims" is not cleared for FERPA/);
    assert.equal(a.check("auth", "grades", "transcript").allowed, false);
    assert.equal(a.check("claims", "grades", "other").allowed, true, "other endpoints carry no data class");
  });

  test("roles and data class both hold", () => {
    assert.equal(a.check("claims", "payments", "reimburse").allowed, true);
    const p3 = compileAuthorizer(policy(`version: 1
identities:
  claims: { key: ${K.claims}, roles: [CLAIMS_CLERK] }
services:
  payments: { endpoints: { reimburse: { roles: [CLAIMS_CLERK], dataClass: PII } } }
`));
    const d = p3.check("claims", "payments", "reimburse");
    assert.equal(d.allowed, false, "the role without the clearance is not enough");
    assert.match(!d.allowed ? d.reason : "", /not cleared for PII/);
  });

  test("an empty allow list allows no one", () => {
    assert.equal(a.check("claims", "locked", "x").allowed, false);
    const d = a.check("registrar", "grades", "publish");
    assert.equal(d.allowed, false);
    assert.match(!d.allowed ? d.reason : "", /allows no caller/);
  });

  test("services the policy does not name get defaults.allow", () => {
    assert.equal(a.check("auth", "inventory", "list").allowed, true);
    const closed = compileAuthorizer(policy(`version: 1
identities:
  claims: { key: ${K.claims} }
defaults:
  allow: [claims]
services:
  grades: { endpoints: { read: {} } }
`));
    assert.equal(closed.check("claims", "inventory", "list").allowed, true);
    const d = closed.check("auth", "inventory", "list");
    assert.equal(d.allowed, false);
    assert.match(!d.allowed ? d.reason : "", /defaults\.allow allows claims/);
    assert.equal(closed.check("auth", "grades", "read").allowed, false, "a service without its own list inherits defaults.allow, and so do its endpoints");
  });

  test("with no allow list anywhere, every caller is allowed", () => {
    const open = compileAuthorizer(policy("version: 1\n"));
    assert.equal(open.check("anyone", "anything", "at-all").allowed, true);
  });

  test("allowed decisions are one shared object: no allocation on the hot path", () => {
    assert.equal(a.check("claims", "payments", "refund"), a.check("auth", "inventory", "x"));
  });

  test("names that collide with Object.prototype are not special", () => {
    assert.equal(a.check("constructor", "payments", "toString").allowed, false);
    assert.equal(a.check("__proto__", "locked", "hasOwnProperty").allowed, false);
  });

  test("a million checks are quick (O(1) per call)", () => {
    const t0 = performance.now();
    let n = 0;
    for (let i = 0; i < 1_000_000; i++) if (a.check("claims", "payments", "reimburse").allowed) n++;
    const ms = performance.now() - t0;
    assert.equal(n, 1_000_000);
    console.log(`# 1e6 allowed checks in ${ms.toFixed(0)} ms`);
  });
});

describe("callGrants (for broker permissions)", () => {
  test("per target: every endpoint but the closed ones, or only the open ones", () => {
    assert.deepEqual(callGrants(P, "claims"), {
      auth: { all: true, except: [] },
      claims: { all: true, except: [] },
      grades: { all: true, except: ["publish", "transcript"] },
      payments: { all: true, except: ["audit-log"] },
      registrar: { all: true, except: [] },
    });
    assert.deepEqual(callGrants(P, "auth", ["inventory"]), {
      auth: { all: true, except: [] },
      claims: { all: true, except: [] },
      grades: { all: true, except: ["publish", "transcript"] },
      inventory: { all: true, except: [] },
      payments: { all: false, only: ["health"] },
      registrar: { all: true, except: [] },
    });
  });

  test("grants agree with check", () => {
    const a = compileAuthorizer(P);
    for (const caller of ["claims", "auth", "payments", "registrar", "stranger"]) {
      const g = callGrants(P, caller);
      for (const [svc, spec] of Object.entries(P.services ?? {})) {
        for (const ep of [...Object.keys(spec.endpoints ?? {}), "unnamed"]) {
          const grant = g[svc];
          const granted = grant === undefined ? false : grant.all ? !grant.except.includes(ep) : grant.only.includes(ep);
          assert.equal(granted, a.check(caller, svc, ep).allowed, `${caller} → ${svc}.${ep}`);
        }
      }
    }
  });
});

describe("settingsFor", () => {
  test("defaults ← service, in the CallSettingsInput shape", () => {
    const s = settingsFor(P, "payments");
    assert.deepEqual(s.call, {
      timeoutMs: 3000,
      retry: { attempts: 3, backoffMs: 50, maxBackoffMs: 1000 },
      breaker: { errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeoutMs: 30000 },
    });
    // Layered over code defaults, fields the policy leaves out keep the code's values.
    const merged = mergeCallSettings(DEFAULT_CALL_SETTINGS, { breaker: { rollingCountTimeoutMs: 5000 } }, s.call);
    assert.equal(merged.timeoutMs, 3000);
    assert.equal(merged.retry.attempts, 3);
    assert.equal(merged.breaker.rollingCountTimeoutMs, 5000);
    assert.equal(merged.breaker.enabled, true);
  });

  test("per-endpoint overrides", () => {
    const s = settingsFor(P, "payments");
    assert.deepEqual(s.endpoints.reimburse, {
      call: { timeoutMs: 1500, retry: { attempts: 3, backoffMs: 50, maxBackoffMs: 1000 }, breaker: { errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeoutMs: 30000 } },
      idempotent: true,
      maxConcurrent: 64,
    });
    assert.equal(s.endpoints.health?.call.timeoutMs, 3000, "an endpoint without timeoutMs has the service's");
    assert.equal(s.endpoints.health?.idempotent, undefined);
  });

  test("rate limits: the service's, with defaults.rateLimit for callers not named", () => {
    assert.deepEqual(settingsFor(P, "payments").rateLimits, { "*": { rps: 10 }, claims: { rps: 50, burst: 100 } });
    assert.deepEqual(settingsFor(P, "grades").rateLimits, { "*": { rps: 1000, burst: 2000 } });
    assert.deepEqual(rateLimitFor(P, "payments", "claims"), { rps: 50, burst: 100 });
    assert.deepEqual(rateLimitFor(P, "payments", "auth"), { rps: 10 });
    assert.deepEqual(rateLimitFor(P, "grades", "auth"), { rps: 1000, burst: 2000 });
    assert.equal(rateLimitFor(policy("version: 1\n"), "grades", "auth"), undefined);
  });

  test("traffic weights, and services the policy does not name", () => {
    assert.deepEqual(settingsFor(P, "payments").traffic, { "2.1.0": 90, "2.2.0": 10 });
    const s = settingsFor(P, "inventory");
    assert.equal(s.traffic, undefined);
    assert.deepEqual(s.endpoints, {});
    assert.equal(s.call.timeoutMs, 2000);
  });

  test("an empty policy gives empty settings, so code settings show through", () => {
    const s = settingsFor(policy("version: 1\n"), "payments");
    assert.deepEqual(s, { call: {}, rateLimits: {}, endpoints: {} });
    assert.deepEqual(mergeCallSettings(DEFAULT_CALL_SETTINGS, s.call), DEFAULT_CALL_SETTINGS);
  });
});
