// Identity and authorization in the call path, with a policy in force on every
// participant (set in code here; the KV store and live reload feed the same state).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from "nats";
import { connect, createSigner, type Mesh, MeshEventSchema, newIdentity, parsePolicy, type PolicyDocument } from "svcmesh";
import { decodeBody, decodeReply, encodeBody } from "svcmesh/internal";
import { z } from "zod";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { waitFor } from "../../../test/helpers/wait.ts";

const ids = { claims: newIdentity(), clerk: newIdentity(), intern: newIdentity(), payments: newIdentity(), mallory: newIdentity() };

const policyText = `
version: 1
identities:
  claims:   { key: ${ids.claims.publicKey}, roles: [CLAIMS_CLERK], clearances: [PII] }
  clerk:    { key: ${ids.clerk.publicKey}, roles: [CLAIMS_CLERK] }
  intern:   { key: ${ids.intern.publicKey} }
  payments: { key: ${ids.payments.publicKey} }
services:
  payments:
    allow: [claims, clerk, intern]
    endpoints:
      reimburse: { roles: [CLAIMS_CLERK], dataClass: PII }
`;

let server: NatsServer;
let policy: PolicyDocument;
let raw: NatsConnection;
const open: Mesh[] = [];
const seen: string[] = [];

async function as(name: keyof typeof ids, opts: { seed?: string | null; withPolicy?: boolean } = {}): Promise<Mesh> {
  const seed = opts.seed === null ? undefined : (opts.seed ?? ids[name].seed);
  const m = await connect({ servers: server.url, name, ...(seed ? { seed } : {}) });
  if (opts.withPolicy !== false) m.policy.set(policy, 1);
  open.push(m);
  return m;
}

before(async () => {
  const parsed = parsePolicy(policyText);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  policy = parsed.policy;
  server = await startNatsServer();
  raw = await natsConnect({ servers: server.url });
  const host = await as("payments");
  await host.serve({
    name: "payments",
    version: "2.1.0",
    endpoints: {
      reimburse: { input: z.object({ claimId: z.string() }), handler: (r, ctx) => { seen.push(ctx.caller); return `paid ${r.claimId} for ${ctx.caller}`; } },
      status: { handler: (_r, ctx) => `ok for ${ctx.caller}` },
    },
  });
});

after(async () => {
  await Promise.allSettled(open.map((m) => m.close()));
  await raw.close();
  await server.stop();
});

describe("identity", () => {
  test("a registered caller with its seed is authenticated; the handler sees the verified name", async () => {
    const claims = await as("claims");
    assert.equal(await claims.call("payments", "reimburse", { claimId: "C1" }), "paid C1 for claims");
    assert.equal(seen.at(-1), "claims");
  });

  test("no token: UNAUTHENTICATED, even when the name is a registered one", async () => {
    const impostor = await as("claims", { seed: null });
    const e = await meshFailure(impostor.call("payments", "status"));
    assert.equal(e.code, "UNAUTHENTICATED");
    assert.match(e.message, /missing Mesh-Token/);
  });

  test("an unregistered identity: UNAUTHENTICATED", async () => {
    const mallory = await as("mallory", { withPolicy: false });
    const e = await meshFailure(mallory.call("payments", "status"));
    assert.equal(e.code, "UNAUTHENTICATED");
    assert.match(e.message, /not a registered identity/);
  });

  test("a name signed with another identity's key (forged): UNAUTHENTICATED", async () => {
    const forger = await as("claims", { seed: ids.intern.seed });
    const e = await meshFailure(forger.call("payments", "status"));
    assert.equal(e.code, "UNAUTHENTICATED");
    assert.match(e.message, /key mismatch|forged/);
  });

  test("an expired token and a token for another service are refused", async () => {
    const signer = createSigner("claims", ids.claims.seed);
    const expired = signer.tokenFor("payments", Date.now() - 10 * 60_000);
    const elsewhere = signer.tokenFor("ledger");
    for (const [token, why] of [[expired, /expired/], [elsewhere, /wrong target/]] as const) {
      const h = natsHeaders();
      h.set("Mesh-Token", token);
      const reply = await raw.request("svc.payments.v2.status", encodeBody(undefined), { timeout: 2000, headers: h });
      assert.throws(() => decodeReply(reply, "svc.payments.v2.status"), (e: { code: string; message: string }) => e.code === "UNAUTHENTICATED" && why.test(e.message));
    }
  });
});

describe("authorization", () => {
  test("roles and data classes: the clerk lacks PII clearance, the intern lacks the role; both may read status", async () => {
    const clerk = await as("clerk");
    const intern = await as("intern");
    const e1 = await meshFailure(clerk.call("payments", "reimburse", { claimId: "C2" }));
    assert.equal(e1.code, "FORBIDDEN");
    assert.match(e1.message, /PII/);
    const e2 = await meshFailure(intern.call("payments", "reimburse", { claimId: "C3" }));
    assert.equal(e2.code, "FORBIDDEN");
    assert.equal((e2.details as { local?: boolean }).local, true, "the caller knew and did not send it");
    assert.equal(await intern.call("payments", "status"), "ok for intern");
  });

  test("the callee enforces even when the caller's library does not know the policy", async () => {
    const intern = await as("intern", { withPolicy: false });
    const before = seen.length;
    const e = await meshFailure(intern.call("payments", "reimburse", { claimId: "C4" }));
    assert.equal(e.code, "FORBIDDEN");
    assert.equal((e.details as { local?: boolean }).local, undefined, "refused by the callee");
    assert.equal(seen.length, before, "the handler never ran");
  });

  test("roles come from the verified identity, never from what the caller writes", async () => {
    const h = natsHeaders();
    h.set("Mesh-Caller", "claims"); // claims holds the role, but the token is the intern's
    h.set("Mesh-Token", createSigner("intern", ids.intern.seed).tokenFor("payments"));
    const reply = await raw.request("svc.payments.v2.reimburse", encodeBody({ claimId: "C5" }), { timeout: 2000, headers: h });
    assert.throws(() => decodeReply(reply, "x"), (e: { code: string }) => e.code === "UNAUTHENTICATED");
  });
});

describe("refused access as mesh events", () => {
  test("the callee publishes forbidden (the verified caller) and unauthenticated (the claimed name if registered) events, coalesced", async () => {
    const events: Array<{ type: string; service: string; caller: string; endpoint: string; count: number }> = [];
    const sub = raw.subscribe("svc.events.*.payments", { callback: (_e, m) => events.push(decodeBody(m.data) as never) });
    await raw.flush();
    // Earlier tests' refusals are flushed within a window (1 s): let them pass first.
    await sleep(1_500);
    events.length = 0;
    try {
      // The clerk lacks the PII clearance; refused by the callee, not by the caller's library.
      const clerk = await as("clerk", { withPolicy: false });
      for (let i = 0; i < 3; i++) assert.equal((await meshFailure(clerk.call("payments", "reimburse", { claimId: `C${i}` }))).code, "FORBIDDEN");
      // Without a token: a registered name (intern), and 20 names a prober made up.
      for (const name of ["intern", ...Array.from({ length: 20 }, (_, i) => `eve-probe-${i}`)]) {
        const h = natsHeaders();
        h.set("Mesh-Caller", name);
        const reply = await raw.request("svc.payments.v2.status", encodeBody(undefined), { timeout: 2000, headers: h });
        assert.throws(() => decodeReply(reply, "x"), (e: { code: string }) => e.code === "UNAUTHENTICATED");
      }
      // Summed, since a window may end between two calls.
      const mine = () => {
        const sums = new Map<string, { type: string; caller: string; service: string; endpoint: string; count: number }>();
        for (const e of events) {
          const k = `${e.type} ${e.caller} ${e.endpoint}`;
          const was = sums.get(k);
          sums.set(k, { type: e.type, caller: e.caller, service: e.service, endpoint: e.endpoint, count: (was?.count ?? 0) + e.count });
        }
        return [...sums.values()].sort((a, b) => a.type.localeCompare(b.type) || a.caller.localeCompare(b.caller));
      };
      await waitFor("both events", () => mine().reduce((n, e) => n + e.count, 0) >= 24);
      assert.deepEqual(mine(), [
        { type: "forbidden", caller: "clerk", service: "payments", endpoint: "reimburse", count: 3 },
        // Made-up names are one key, "": a probe cannot open a window per name.
        { type: "unauthenticated", caller: "", service: "payments", endpoint: "status", count: 20 },
        { type: "unauthenticated", caller: "intern", service: "payments", endpoint: "status", count: 1 },
      ]);
      assert.ok(events.filter((e) => e.type === "unauthenticated" && e.caller === "").length <= 2, "coalesced under one key");
      assert.ok(events.filter((e) => e.caller === "clerk").length <= 2, "coalesced, not one event per call");
      for (const e of events) assert.ok(MeshEventSchema.safeParse(e).success, JSON.stringify(e));
    } finally {
      sub.unsubscribe();
    }
  });
});
