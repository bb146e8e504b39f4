// The policy applied to the mesh's KV bucket reaches running services and callers
// without restarts; an invalid document is refused whole and the last good one holds.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { applyPolicy, connect, type Mesh, newIdentity } from "svcmesh";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

const ids = { claims: newIdentity(), payments: newIdentity(), auditor: newIdentity() };
let server: NatsServer;
let operator: NatsConnection;
const open: Mesh[] = [];

const policy = (allow: string[]) => `
version: 1
identities:
  claims:   { key: ${ids.claims.publicKey} }
  payments: { key: ${ids.payments.publicKey} }
  auditor:  { key: ${ids.auditor.publicKey} }
services:
  payments:
    allow: [${allow.join(", ")}]
`;

async function as(name: keyof typeof ids): Promise<Mesh> {
  const m = await connect({ servers: server.url, name, seed: ids[name].seed });
  open.push(m);
  return m;
}

const rev = (m: Mesh) => m.policy.inForce?.revision;

async function until(cond: () => boolean, ms: number): Promise<number> {
  const started = Date.now();
  while (!cond() && Date.now() - started < ms) await sleep(1);
  assert.ok(cond(), "the change did not arrive");
  return Date.now() - started;
}

before(async () => {
  server = await startNatsServer({ jetstream: true });
  operator = await natsConnect({ servers: server.url });
});

after(async () => {
  await Promise.allSettled(open.map((m) => m.close()));
  await operator.close();
  await server.stop();
});

test("apply → a running service and a running caller follow it; an invalid document changes nothing", async () => {
  const host = await as("payments");
  await host.serve({ name: "payments", version: "1.0.0", endpoints: { pay: { handler: (_r, ctx) => `paid for ${ctx.caller}` } } });
  const claims = await as("claims");
  const auditor = await as("auditor");
  assert.equal(rev(host), undefined, "nothing applied yet: an open mesh");
  assert.equal(await auditor.call("payments", "pay"), "paid for auditor");

  const first = await applyPolicy(operator, policy(["claims"]), { by: "test" });
  // The first apply creates the bucket; watchers that started before it poll for it.
  const seen = await until(() => rev(host) === first.revision && rev(claims) === first.revision, 5000);
  console.log(`first policy (bucket created by the apply) reached a service and a caller in ${seen} ms`);
  assert.equal(await claims.call("payments", "pay"), "paid for claims");
  assert.equal((await meshFailure(auditor.call("payments", "pay"))).code, "FORBIDDEN");

  const bad = await meshFailure(applyPolicy(operator, policy(["claims", "nobody-known"]).replace("version: 1", "version: 1\nsurprise: true"), { by: "test" }));
  assert.equal(bad.code, "BAD_REQUEST");
  assert.ok((bad.details as { errors: { line: number }[] }).errors.every((e) => e.line > 0), "errors carry line numbers");
  await sleep(200);
  assert.equal(rev(host), first.revision, "the last good policy stays");
  assert.equal((await meshFailure(auditor.call("payments", "pay"))).code, "FORBIDDEN");

  const second = await applyPolicy(operator, policy(["claims", "auditor"]), { by: "test" });
  const change = await until(() => rev(host) === second.revision && rev(auditor) === second.revision, 5000);
  console.log(`a policy change reached a service and a caller in ${change} ms`);
  assert.equal(await auditor.call("payments", "pay"), "paid for auditor");
});

test("calls carry the revision of the policy in force (Mesh-Policy), from callers with and without a seed", async () => {
  const host = await as("payments");
  await host.serve({ name: "payments", version: "1.0.0", endpoints: { pay: { handler: (_r, ctx) => `paid for ${ctx.caller}` } } });
  const claims = await as("claims");
  // No seed: its calls carry no token, but the revision all the same.
  const visitor = await connect({ servers: server.url, name: "visitor", logLevel: "silent" });
  open.push(visitor);
  const seen: string[] = [];
  const spy = operator.subscribe("svc.payments.v1.pay", { callback: (_e, m) => seen.push(`${m.headers?.get("Mesh-Caller")} ${m.headers?.get("Mesh-Policy")}`) });
  await operator.flush();
  const applied = await applyPolicy(operator, policy(["\"*\""]), { by: "test" });
  await until(() => rev(host) === applied.revision && rev(claims) === applied.revision && rev(visitor) === applied.revision, 5000);
  assert.equal(await claims.call("payments", "pay"), "paid for claims");
  // Refused by the callee (a policy with identities wants a token), but sent.
  assert.equal((await meshFailure(visitor.call("payments", "pay"))).code, "UNAUTHENTICATED");
  await until(() => seen.length >= 2, 5000);
  spy.unsubscribe();
  assert.deepEqual(seen.sort(), [`claims ${applied.revision}`, `visitor ${applied.revision}`]);
});
