// A policy document → broker plan → nats-server config, run by a REAL nats-server:
// services connect with their seeds, and what the policy forbids is refused by the
// server itself (FORBIDDEN through the library, permission errors with raw nats.js).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, ErrorCode, type NatsConnection, nkeyAuthenticator } from "nats";
import { connect, type Identity, type Mesh, newIdentity, parsePolicy, type PolicyDocument } from "svcmesh";
import { z } from "zod";
import { brokerPlanFromPolicy, brokerPlanNotes, PolicyBrokerError, servicesWithoutKeys } from "../src/broker/from-policy.ts";
import { brokerUsers, natsAuthorizationConfig, serviceConnectSettings } from "../src/broker/nats-config.ts";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

const ids: Record<"claims" | "payments" | "auth" | "mallory" | "ops", Identity> = {
  claims: newIdentity(),
  payments: newIdentity(),
  auth: newIdentity(),
  mallory: newIdentity(),
  ops: newIdentity(),
};

// claims may call payments.reimburse only; auth is open to claims; nobody else calls
// anything (defaults.allow: []).
const yaml = `
version: 1
identities:
  claims:   { key: ${ids.claims.publicKey}, roles: [CLERK] }
  payments: { key: ${ids.payments.publicKey} }
  auth:     { key: ${ids.auth.publicKey} }
  mallory:  { key: ${ids.mallory.publicKey} }
defaults:
  allow: []
services:
  payments:
    allow: []
    endpoints:
      reimburse: { allow: [claims] }
      refund: { allow: [claims], roles: [TREASURER] }
  auth:
    allow: [claims]
`;

function parse(text: string): PolicyDocument {
  const r = parsePolicy(text);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  return r.policy;
}

const policy = parse(yaml);

describe("brokerPlanFromPolicy", () => {
  test("one user per identity; calls from the allow rules, narrowed by roles", () => {
    const plan = brokerPlanFromPolicy(policy, { operators: { ops: { key: ids.ops.publicKey } }, policyBucket: "svcmesh_policies" });
    assert.deepEqual(Object.keys(plan.services), ["auth", "claims", "mallory", "payments"]);
    // refund names claims but requires TREASURER, which claims does not hold.
    assert.deepEqual(plan.services.claims, { key: ids.claims.publicKey, calls: { auth: ["*"], payments: ["reimburse"] } });
    assert.deepEqual(plan.services.mallory, { key: ids.mallory.publicKey });
    assert.deepEqual(plan.services.payments, { key: ids.payments.publicKey });
    assert.deepEqual(plan.operators, { ops: { key: ids.ops.publicKey } });
    assert.equal(plan.policyBucket, "svcmesh_policies");
    assert.deepEqual(brokerPlanNotes(policy), []);
    const claims = brokerUsers(plan).find((u) => u.name === "claims")!.permissions!;
    assert.ok(claims.publish.includes("svc.payments.*.reimburse"));
    assert.ok(claims.publish.includes("svc.auth.*.*"));
    assert.ok(!claims.publish.some((s) => s.includes("refund")));
  });

  test("data classes narrow too; a role the caller holds opens the endpoint", () => {
    const p = parse(`
version: 1
identities:
  a: { key: ${ids.claims.publicKey}, roles: [TREASURER] }
  b: { key: ${ids.mallory.publicKey}, clearances: [FERPA] }
  s: { key: ${ids.payments.publicKey} }
services:
  s:
    endpoints:
      pay: { roles: [TREASURER] }
      grades: { dataClass: FERPA }
`);
    const plan = brokerPlanFromPolicy(p);
    // Allowed all of s except one named endpoint each: only the named open ones (closed mode).
    assert.deepEqual(plan.services.a!.calls!.s, ["pay"]);
    assert.deepEqual(plan.services.b!.calls!.s, ["grades"]);
    // s itself: neither role nor clearance; a and b are open to everyone by default.
    assert.deepEqual(plan.services.s!.calls, { a: ["*"], b: ["*"] });
    const notes = brokerPlanNotes(p);
    assert.equal(notes.length, 3, notes.join("\n"));
    assert.ok(notes.some((n) => n.startsWith("a → s:") && n.includes("except grades") && n.includes("(pay)")));
    assert.ok(notes.some((n) => n.startsWith("s → s:") && n.includes("(none)")));
    // "open": a service-wide grant, unnamed endpoints inherit the service rule.
    const open = brokerPlanFromPolicy(p, { unnamedEndpoints: "open" });
    assert.deepEqual(open.services.a!.calls!.s, ["*"]);
    assert.equal(brokerPlanNotes(p, { unnamedEndpoints: "open" }).length, 3);
  });

  test("a service with no identity is an error, unless a key is supplied", () => {
    const p = parse(`
version: 1
identities:
  claims: { key: ${ids.claims.publicKey} }
services:
  ledger: { allow: [claims] }
  reports: {}
`);
    assert.deepEqual(servicesWithoutKeys(p), ["ledger", "reports"]);
    assert.throws(() => brokerPlanFromPolicy(p), (e: unknown) => {
      assert.ok(e instanceof PolicyBrokerError);
      assert.equal(e.issues.length, 2);
      assert.match(e.issues[0]!, /^services\.ledger: no identity/);
      return true;
    });
    const gen = { ledger: newIdentity().publicKey, reports: newIdentity().publicKey };
    const plan = brokerPlanFromPolicy(p, { keys: gen });
    assert.equal(plan.services.ledger!.key, gen.ledger);
    assert.deepEqual(plan.services.claims!.calls, { claims: ["*"], ledger: ["*"], reports: ["*"] }); // defaults: open, itself included
    // a key for a name that has one in the policy, and a duplicate operator key
    assert.throws(() => brokerPlanFromPolicy(p, { keys: { ...gen, claims: ids.auth.publicKey } }), /keys\.claims: identity "claims" has its key/);
    assert.throws(() => brokerPlanFromPolicy(p, { keys: gen, operators: { ops: { key: ids.claims.publicKey } } }), /operators\.ops\.key: the same key as services\.claims/);
  });
});

describe("the generated config on a real nats-server", () => {
  let server: NatsServer;
  const meshes: Mesh[] = [];
  const raws: NatsConnection[] = [];
  const handled: string[] = [];
  const Claim = z.object({ claimId: z.string() });
  const Out = z.object({ ok: z.string() });

  const as = async (name: "claims" | "payments" | "auth" | "mallory") => {
    const m = await connect({ servers: server.url, name, seed: ids[name].seed });
    meshes.push(m);
    return m;
  };

  before(async () => {
    const plan = brokerPlanFromPolicy(policy, { operators: { ops: { key: ids.ops.publicKey } } });
    assert.equal(serviceConnectSettings(plan).claims!.inboxPrefix, "_INBOX_claims");
    server = await startNatsServer({ jetstream: true, extraConfig: natsAuthorizationConfig(plan) });
    await (await as("payments")).serve({
      name: "payments",
      version: "2.1.0",
      endpoints: {
        reimburse: { input: Claim, output: Out, handler: async (r) => (handled.push(`reimburse ${r.claimId}`), { ok: "T-" + r.claimId }) },
        refund: { input: Claim, output: Out, handler: async (r) => (handled.push(`refund ${r.claimId}`), { ok: "R-" + r.claimId }) },
      },
    });
    await (await as("auth")).serve({
      name: "auth",
      version: "1.0.0",
      endpoints: { verify: { input: Claim, output: Out, handler: async (r) => ({ ok: "V-" + r.claimId }) } },
    });
  });

  after(async () => {
    await Promise.allSettled(meshes.map((m) => m.close()));
    await Promise.allSettled(raws.map((nc) => nc.close()));
    await server?.stop();
  });

  test("allowed calls work", async () => {
    const claims = await as("claims");
    assert.deepEqual(await claims.call("payments@^2", "reimburse", { claimId: "C1" }, { timeoutMs: 3000 }), { ok: "T-C1" });
    assert.deepEqual(await claims.call("auth", "verify", { claimId: "C2" }, { timeoutMs: 3000 }), { ok: "V-C2" });
  });

  test("a forbidden endpoint: FORBIDDEN from the broker, at once, and the handler never runs", async () => {
    const claims = await as("claims");
    const t0 = Date.now();
    const e = await meshFailure(claims.call("payments@^2", "refund", { claimId: "C3" }, { timeoutMs: 5000 }));
    assert.equal(e.code, "FORBIDDEN", e.message);
    assert.deepEqual(e.details, { subject: "svc.payments.v2.refund" });
    assert.ok(Date.now() - t0 < 2000, `failed after ${Date.now() - t0} ms`);
    assert.ok(!handled.some((h) => h.startsWith("refund")));
    // A service the policy gives no grant on the target cannot reach it either.
    const mallory = await as("mallory");
    assert.equal((await meshFailure(mallory.call("payments@^2", "reimburse", { claimId: "X" }, { timeoutMs: 5000 }))).code, "FORBIDDEN");
  });

  test("raw nats.js: a forbidden request and a subscription to another service's subject are refused", async () => {
    const nc = await natsConnect({ servers: server.url, authenticator: nkeyAuthenticator(new TextEncoder().encode(ids.mallory.seed)), inboxPrefix: "_INBOX_mallory" });
    raws.push(nc);
    await assert.rejects(nc.request("svc.payments.v2.reimburse", new Uint8Array(), { timeout: 3000 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, ErrorCode.PermissionsViolation);
      return true;
    });
    const sub = nc.subscribe("svc.payments.>");
    const stolen: string[] = [];
    const ended = (async () => {
      try {
        for await (const m of sub) stolen.push(m.subject);
        return undefined;
      } catch (e) {
        return e as Error & { code?: string };
      }
    })();
    const err = await Promise.race([ended, sleep(3000).then(() => "still open" as const)]);
    assert.notEqual(err, "still open");
    assert.equal((err as { code?: string } | undefined)?.code, ErrorCode.PermissionsViolation);
    assert.match((err as Error).message, /Permissions Violation for Subscription to "svc\.payments\.>"/);
    // payments still gets every request
    const claims = await as("claims");
    assert.deepEqual(await claims.call("payments@^2", "reimburse", { claimId: "C9" }, { timeoutMs: 3000 }), { ok: "T-C9" });
    assert.deepEqual(stolen, []);
  });
});
