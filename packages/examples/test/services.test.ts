// The example services in-process, each on its own connection, against a real
// nats-server started for this file.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Mesh, ServiceHandle } from "svcmesh";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { meshFailure, meshPool } from "../../../test/helpers/mesh.ts";
import { AUTH_TARGET, claimants, type VerifyResult, verify } from "../src/auth.ts";
import { catalog, serviceNames } from "../src/catalog.ts";
import { CLAIMS_TARGET, type ClaimReceipt } from "../src/claims.ts";
import { PAYMENTS_TARGET, type Reimbursement } from "../src/payments.ts";
import { deviations, runStory } from "../src/story.ts";

let server: NatsServer;
const pool = meshPool(() => server.url);
const mesh = pool.open;
const handles = new Map<string, ServiceHandle>();
let client: Mesh;


const failure = meshFailure;

const token = (id: string) => claimants.get(id)!.token;
const claim = (over: Record<string, unknown> = {}) => ({
  claimId: "C-1", claimantId: "alice", token: token("alice"), usd: 12.345, description: "lost parcel", ...over,
});

before(async () => {
  server = await startNatsServer();
  handles.set("auth", await catalog.auth(await mesh("auth")));
  handles.set("claims", await catalog.claims(await mesh("claims")));
  handles.set("payments-1", await catalog.payments(await mesh("payments")));
  handles.set("payments-2", await catalog.payments(await mesh("payments")));
  client = await mesh("test-client");
});

after(async () => {
  await pool.closeAll();
  await server?.stop();
});

describe("catalog", () => {
  test("names every service with its version line", () => {
    assert.deepEqual([...serviceNames].sort(), ["auth", "claims", "payments"]);
    const got = [...handles].map(([label, h]) => [label, h.name, h.version.split(".")[0]]);
    assert.deepEqual(got, [
      ["auth", "auth", "1"],
      ["claims", "claims", "1"],
      ["payments-1", "payments", "2"],
      ["payments-2", "payments", "2"],
    ]);
  });
});

describe("auth.verify", () => {
  test("knows a claimant by id and token", async () => {
    const out = await client.call<VerifyResult>(AUTH_TARGET, "verify", { claimantId: "bob", token: token("bob") });
    assert.deepEqual(out, { verified: true, claimantId: "bob", name: "Bob Okafor" });
  });

  test("answers verified:false for an unknown claimant or a wrong token", async () => {
    assert.deepEqual(await client.call(AUTH_TARGET, "verify", { claimantId: "mallory", token: "x" }), { verified: false, claimantId: "mallory", reason: "unknown claimant" });
    assert.deepEqual(await client.call(AUTH_TARGET, "verify", { claimantId: "bob", token: token("alice") }), { verified: false, claimantId: "bob", reason: "token mismatch" });
    assert.equal(verify({ claimantId: "bob", token: token("bob") + "x" }).verified, false);
  });

  test("refuses malformed input with BAD_REQUEST", async () => {
    assert.equal((await failure(client.call(AUTH_TARGET, "verify", { claimantId: "bob" }))).code, "BAD_REQUEST");
  });
});

describe("payments.reimburse", () => {
  test("pays in cents and names the instance that served it", async () => {
    const out = await client.call<Reimbursement>(PAYMENTS_TARGET, "reimburse", { claimId: "C-9", usd: 10.005 });
    assert.equal(out.txn, "T-C-9");
    assert.equal(out.usd, 10.01);
    assert.ok([handles.get("payments-1")!.id, handles.get("payments-2")!.id].includes(out.servedBy), out.servedBy);
    assert.equal(out.pid, process.pid);
  });

  test("refuses a non-positive amount", async () => {
    assert.equal((await failure(client.call(PAYMENTS_TARGET, "reimburse", { claimId: "C-9", usd: 0 }))).code, "BAD_REQUEST");
  });
});

describe("claims.submit", () => {
  test("verifies, then reimburses, and reports which payments instance paid", async () => {
    const out = await client.call<ClaimReceipt>(CLAIMS_TARGET, "submit", claim());
    assert.equal(out.status, "paid");
    assert.equal(out.claimant, "Alice Andersen");
    assert.equal(out.usd, 12.35);
    assert.equal(out.txn, "T-C-1");
    assert.ok([handles.get("payments-1")!.id, handles.get("payments-2")!.id].includes(out.payments.instance));
  });

  test("an unknown claimant or a wrong token is FORBIDDEN, and nothing is paid", async () => {
    for (const bad of [claim({ claimantId: "mallory", token: "guess" }), claim({ token: token("bob") })]) {
      const e = await failure(client.call(CLAIMS_TARGET, "submit", bad));
      assert.equal(e.code, "FORBIDDEN");
      assert.match(e.message, /could not be verified/);
      assert.doesNotMatch(e.message, /token mismatch|unknown claimant/, "the claimant is not told why");
    }
  });

  test("invalid claims are BAD_REQUEST with the zod issues", async () => {
    const e = await failure(client.call(CLAIMS_TARGET, "submit", claim({ usd: -5 })));
    assert.equal(e.code, "BAD_REQUEST");
    const issues = (e.details as { issues: { path: string[] }[] }).issues;
    assert.deepEqual(issues.map((i) => i.path), [["usd"]]);
    assert.equal((await failure(client.call(CLAIMS_TARGET, "submit", claim({ claimId: "has spaces" })))).code, "BAD_REQUEST");
  });

});

describe("the story", () => {
  test("goes as scripted and both payments instances take a share", async () => {
    const ids = [handles.get("payments-1")!.id, handles.get("payments-2")!.id];
    const result = await runStory(client, { enoughServed: (s) => ids.every((id) => (s.get(id)?.count ?? 0) > 0) });
    assert.deepEqual(deviations(result), []);
    assert.equal(result.enough, true);
    assert.deepEqual([...result.served.keys()].sort(), [...ids].sort());
    const paid = [...result.served.values()].reduce((a, s) => a + s.count, 0);
    assert.equal(paid, result.outcomes.filter((o) => o.ok).length + result.burstClaims);
  });
});

describe("when payments is down", () => {
  test("claims answers UNAVAILABLE naming the missing dependency, after the claimant was verified", async () => {
    await handles.get("payments-1")!.stop();
    await handles.get("payments-2")!.stop();
    const e = await failure(client.call(CLAIMS_TARGET, "submit", claim({ claimId: "C-2" })));
    assert.equal(e.code, "UNAVAILABLE", e.message);
    assert.equal((e.details as { dependency: { code: string } }).dependency.code, "NO_RESPONDERS");
    // auth still answers: the refusal for a bad claimant comes before payments is needed
    assert.equal((await failure(client.call(CLAIMS_TARGET, "submit", claim({ token: "nope" })))).code, "FORBIDDEN");
  });

  test("a stand-in payments sees claims as the caller and the submitter's deadline", async () => {
    const seen: { caller: string; deadline: number }[] = [];
    await (await mesh("payments-stub")).serve({
      name: "payments",
      version: "2.9.0",
      endpoints: {
        reimburse: {
          handler: (req: { claimId: string; usd: number }, ctx): Reimbursement => {
            seen.push({ caller: ctx.caller, deadline: ctx.deadline });
            return { txn: "STUB", claimId: req.claimId, usd: req.usd, servedBy: ctx.instance, host: "stub", pid: 0 };
          },
        },
      },
    });
    const deadline = Date.now() + 1_500;
    const out = await client.call<ClaimReceipt>(CLAIMS_TARGET, "submit", claim({ claimId: "C-3" }), { deadline });
    assert.equal(out.txn, "STUB");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.caller, "claims");
    assert.ok(seen[0]!.deadline <= deadline, `nested deadline ${seen[0]!.deadline} is later than the submitter's ${deadline}`);
  });
});
