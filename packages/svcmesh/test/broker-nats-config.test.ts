// The broker enforces who may call what: a real nats-server runs the authorization
// block generated from a plan, services connect as their nkey users, and what the plan
// forbids is refused by the server itself, whether the library is used or raw nats.js.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, ErrorCode, type NatsConnection, nkeyAuthenticator, type Status } from "nats";
import { createUser, type KeyPair } from "nkeys.js";
import { connect, ensureAuditStream, ensureEventsStream, type Mesh } from "svcmesh";
import { z } from "zod";
import { type BrokerPlan, brokerUsers, BrokerPlanError, natsAuthorizationConfig, serviceConnectSettings } from "../src/broker/nats-config.ts";
import { type Attempt, RequestTransport } from "../src/client/transport.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { meshFailure } from "../../../test/helpers/mesh.ts";

const keys: Record<"claims" | "payments" | "mallory" | "ops", KeyPair> = {
  claims: createUser(),
  payments: createUser(),
  mallory: createUser(),
  ops: createUser(),
};
const pub = (k: KeyPair) => k.getPublicKey();

const plan: BrokerPlan = {
  services: {
    claims: { key: pub(keys.claims), calls: { payments: ["reimburse"] } },
    payments: { key: pub(keys.payments) },
    // mallory may call claims, nothing of payments.
    mallory: { key: pub(keys.mallory), calls: { claims: ["*"] } },
  },
  operators: { ops: { key: pub(keys.ops) } },
  // No policyBucket: services are granted the library's bucket by default.
};

function attempt(): Attempt {
  return { attemptDeadline: Date.now() + 5000, signal: undefined, requestId: "raw-1", idempotent: false, traceLines: "", reply: undefined };
}

const Claim = z.object({ claimId: z.string(), usd: z.number().positive() });
const Txn = z.object({ txn: z.string(), by: z.string() });

let server: NatsServer;
const meshes: Mesh[] = [];
const raws: NatsConnection[] = [];
/** Status events of every connection opened here, by its user. */
const statuses = new Map<NatsConnection, Status[]>();

function watch(nc: NatsConnection): void {
  const seen: Status[] = [];
  statuses.set(nc, seen);
  void (async () => {
    for await (const s of nc.status()) seen.push(s);
  })().catch(() => undefined);
}

function violations(nc: NatsConnection): Status[] {
  return (statuses.get(nc) ?? []).filter((s) => s.data === ErrorCode.PermissionsViolation);
}

async function meshAs(name: keyof typeof keys): Promise<Mesh> {
  // connect({ seed }) authenticates as the nkey user and takes the private inbox prefix
  // that serviceConnectSettings() names.
  const m = await connect({ servers: server.url, name, seed: new TextDecoder().decode(keys[name].getSeed()) });
  assert.equal(serviceConnectSettings(plan)[name]!.inboxPrefix, `_INBOX_${name}`);
  watch(m.nc);
  meshes.push(m);
  return m;
}

async function rawAs(name: keyof typeof keys, inboxPrefix?: string): Promise<NatsConnection> {
  const nc = await natsConnect({
    servers: server.url,
    authenticator: nkeyAuthenticator(keys[name].getSeed()),
    ...(inboxPrefix ? { inboxPrefix } : {}),
  });
  watch(nc);
  raws.push(nc);
  return nc;
}

/** payments@2.1.0 with reimburse and refund; counts the requests its handlers saw. */
const handled: string[] = [];
let payments: Mesh;
let claims: Mesh;

before(async () => {
  server = await startNatsServer({ jetstream: true, extraConfig: natsAuthorizationConfig(plan) });
  // The operator makes the streams (as `svcmesh apply` does); services may only store into them.
  const ops = await rawAs("ops", "_INBOX");
  await Promise.all([ensureEventsStream(ops), ensureAuditStream(ops)]);
  payments = await meshAs("payments");
  await payments.serve({
    name: "payments",
    version: "2.1.0",
    endpoints: {
      reimburse: {
        input: Claim,
        output: Txn,
        handler: async (req) => {
          handled.push(req.claimId);
          return { txn: "T-" + req.claimId, by: "payments" };
        },
      },
      refund: { input: Claim, output: Txn, handler: async (req) => ({ txn: "R-" + req.claimId, by: "payments" }) },
    },
  });
  claims = await meshAs("claims");
});

after(async () => {
  await Promise.allSettled(meshes.map((m) => m.close()));
  await Promise.allSettled(raws.map((nc) => nc.close()));
  await server.stop();
});

describe("the generated config", () => {
  test("grants each service its own lanes, its inbox, its calls on both lanes, and discovery", () => {
    const users = brokerUsers(plan);
    assert.deepEqual(users.map((u) => [u.name, u.kind]), [["claims", "service"], ["mallory", "service"], ["payments", "service"], ["ops", "operator"]]);
    const c = users.find((u) => u.name === "claims")!.permissions!;
    for (const s of ["svc.claims.>", "_INBOX_claims.>", "$SRV.INFO", "$SRV.INFO.claims", "$SRV.INFO.claims.*", "svc.events.instance_started.*"]) {
      assert.ok(c.subscribe.includes(s), `claims subscribes ${s}`);
    }
    assert.ok(!c.subscribe.some((s) => s.startsWith("svc.payments") || s === "_INBOX.>" || s === ">"), "nothing of payments, no shared inbox");
    for (const s of ["svc.payments.*.reimburse", "$SRV.INFO.payments", "svc.events.*.claims", "svc.events.timeout.payments", "$JS.API.STREAM.INFO.SVC_EVENTS", "$JS.API.STREAM.INFO.SVC_AUDIT"]) {
      assert.ok(c.publish.includes(s), `claims publishes ${s}`);
    }
    // Creating a stream would let a service choose its config (keep nothing, capture others' subjects).
    assert.ok(!c.publish.some((s) => s.startsWith("$JS.API.STREAM.CREATE") || s.startsWith("$JS.API.STREAM.UPDATE")), JSON.stringify(c.publish));
    assert.ok(!c.publish.some((s) => s.includes("refund") || s === "svc.payments.>" || s === "svc.events.instance_started.payments" || s === "svc.events.bulkhead_full.payments"));
    assert.deepEqual(c.allowResponses, { max: 1, expires: "1m" });
    assert.ok(users.find((u) => u.name === "mallory")!.permissions!.publish.includes("svc.claims.*.*"));
    assert.equal(users.find((u) => u.name === "ops")!.permissions, undefined);
    const text = natsAuthorizationConfig(plan);
    assert.match(text, /authorization \{\n {2}users: \[/);
    assert.ok(text.includes(`nkey: "${pub(keys.claims)}"`));
    assert.ok(text.includes('allow_responses: { max: 1, expires: "1m" }'));
    assert.deepEqual(serviceConnectSettings(plan).claims, { name: "claims", key: pub(keys.claims), inboxPrefix: "_INBOX_claims" });
  });

  test("by default every service may read the library's policy bucket and discover itself; policyBucket null grants no bucket", () => {
    const payments = brokerUsers(plan).find((u) => u.name === "payments")!.permissions!;
    for (const s of ["$SRV.INFO.payments", "$JS.API.STREAM.INFO.KV_svcmesh_policies", "$JS.API.CONSUMER.CREATE.KV_svcmesh_policies.>", "$JS.API.DIRECT.GET.KV_svcmesh_policies.>"]) {
      assert.ok(payments.publish.includes(s), `payments publishes ${s}`);
    }
    const none = brokerUsers({ ...plan, policyBucket: null }).find((u) => u.name === "payments")!.permissions!;
    assert.ok(!none.publish.some((s) => s.includes("KV_")), JSON.stringify(none.publish));
    const other = brokerUsers({ ...plan, policyBucket: "team_policies" }).find((u) => u.name === "payments")!.permissions!;
    assert.ok(other.publish.includes("$JS.API.STREAM.INFO.KV_team_policies") && !other.publish.some((s) => s.includes("svcmesh_policies")));
  });

  test("an invalid plan is refused whole, every problem named", () => {
    const bad = {
      services: {
        "Bad Name": { key: pub(keys.claims) },
        a: { key: "UNOTAKEY", calls: { trace: ["x"], b: [], c: ["no.dots"] } },
        d: { key: keys.claims.getPublicKey(), extra: { publish: ["a..b"] } },
      },
    } as BrokerPlan;
    assert.throws(() => natsAuthorizationConfig(bad), (e: unknown) => {
      assert.ok(e instanceof BrokerPlanError);
      const text = e.issues.join("\n");
      for (const want of ["services.Bad Name: invalid service name", "services.a.key", "services.a.calls.trace", "services.a.calls.b", "services.a.calls.c", "services.d.key: the same key as", "services.d.extra.publish"]) {
        assert.ok(text.includes(want), `${want} in ${text}`);
      }
      return true;
    });
  });
});

describe("with the library", () => {
  test("an allowed call works end to end (discovery, inbox, events stream) without a single violation", async () => {
    const out = await claims.call("payments@^2", "reimburse", { claimId: "C1", usd: 40 }, { timeoutMs: 3000 });
    assert.deepEqual(out, { txn: "T-C1", by: "payments" });
    const pinned = await claims.call("payments@2.1.0", "reimburse", { claimId: "C2", usd: 5 }, { timeoutMs: 3000 });
    assert.deepEqual(pinned, { txn: "T-C2", by: "payments" });
    // The events stream can be created and reached with the JetStream grants.
    const info = await claims.events.ensureStream();
    assert.equal(info.config.name, "SVC_EVENTS");
    await claims.nc.flush();
    await payments.nc.flush();
    assert.deepEqual(violations(claims.nc), []);
    assert.deepEqual(violations(payments.nc), []);
  });

  test("a call to a forbidden endpoint fails FORBIDDEN with the subject at once, and the connection keeps working", async () => {
    const t0 = Date.now();
    const e = await meshFailure(claims.call("payments@^2", "refund", { claimId: "C3", usd: 1 }, { timeoutMs: 5000 }));
    const took = Date.now() - t0;
    assert.equal(e.code, "FORBIDDEN", e.message);
    assert.deepEqual(e.details, { subject: "svc.payments.v2.refund" });
    assert.ok(took < 1000, `failed after ${took} ms, well before the 5 s timeout`);
    // The exact lane (pinned and canary routing) is granted and refused the same way.
    const nc = await rawAs("claims", "_INBOX_claims");
    const answered = await nc.request("svc.payments.2_1_0.reimburse", new Uint8Array(), { timeout: 3000 });
    assert.ok(answered.headers?.get("Mesh-Error-Code"), "payments answered on its exact lane (refusing the empty body)");
    await assert.rejects(nc.request("svc.payments.2_1_0.refund", new Uint8Array(), { timeout: 3000 }), /Permissions Violation for Publish to "svc\.payments\.2_1_0\.refund"/);
    // Several at once: each fails, none waits for its deadline.
    const many = await Promise.all(Array.from({ length: 5 }, (_, i) => meshFailure(claims.call("payments@^2", "refund", { claimId: `M${i}`, usd: 1 }, { timeoutMs: 5000 }))));
    assert.ok(many.every((x) => x.code === "FORBIDDEN"));
    assert.ok(Date.now() - t0 < 3000);
    const ok = await claims.call("payments@^2", "reimburse", { claimId: "C5", usd: 1 }, { timeoutMs: 3000 });
    assert.deepEqual(ok, { txn: "T-C5", by: "payments" });
  });

  test("a mesh connected without its private inbox prefix fails fast, not at the timeout", async () => {
    const m = await connect({ servers: server.url, name: "claims", nats: { authenticator: nkeyAuthenticator(keys.claims.getSeed()) } });
    meshes.push(m);
    const t0 = Date.now();
    const e = await meshFailure(m.call("payments@^2", "reimburse", { claimId: "W1", usd: 1 }, { timeoutMs: 5000 }));
    assert.notEqual(e.code, "TIMEOUT", e.message);
    assert.ok(Date.now() - t0 < 4000, `failed after ${Date.now() - t0} ms`);
    // Discovery is refused first: its replies would come to the shared _INBOX.
    assert.equal(e.code, "FORBIDDEN", e.message);
  });

  test("the transport: a refused reply inbox makes every call FORBIDDEN at once; closing stops the status watcher", async () => {
    const nc = await rawAs("claims"); // default _INBOX prefix: not this user's
    const transport = new RequestTransport(nc, { inboxPrefix: "_INBOX", callerName: "claims" });
    const first = transport.send("svc.payments.v2.reimburse", new Uint8Array(), attempt());
    const e = await meshFailure(first);
    assert.equal(e.code, "FORBIDDEN");
    assert.match(String((e.details as { subject: string }).subject), /^_INBOX\./);
    const later = await meshFailure(transport.send("svc.payments.v2.reimburse", new Uint8Array(), attempt()));
    assert.equal(later.code, "FORBIDDEN");
    assert.equal(transport.inFlight, 0);
    transport.close("test over");
  });

  test("a service with no grant on the target cannot even discover it, and its call fails fast", async () => {
    const mallory = await meshAs("mallory");
    const t0 = Date.now();
    const e = await meshFailure(mallory.call("payments@^2", "reimburse", { claimId: "X1", usd: 1 }, { timeoutMs: 5000 }));
    // Discovery ($SRV.INFO.payments) is refused by the server: FORBIDDEN, naming it.
    assert.equal(e.code, "FORBIDDEN", e.message);
    assert.equal((e.details as { subject: string }).subject, "$SRV.INFO.payments");
    assert.ok(Date.now() - t0 < 4000, `failed after ${Date.now() - t0} ms`);
    assert.deepEqual(handled.filter((id) => id === "X1"), []);
  });
});

describe('with discovery: "all"', () => {
  let open: NatsServer;
  const mine: Mesh[] = [];
  before(async () => {
    open = await startNatsServer({ extraConfig: natsAuthorizationConfig({ ...plan, discovery: "all" }) });
  });
  after(async () => {
    await Promise.allSettled(mine.map((m) => m.close()));
    await open.stop();
  });

  test("a caller with no grant on the target discovers it and its call fails FORBIDDEN at the endpoint, at once", async () => {
    const as = async (name: "payments" | "mallory") => {
      const m = await connect({ servers: open.url, name, nats: { inboxPrefix: `_INBOX_${name}`, authenticator: nkeyAuthenticator(keys[name].getSeed()) } });
      mine.push(m);
      return m;
    };
    const seen: string[] = [];
    await (await as("payments")).serve({
      name: "payments",
      version: "2.1.0",
      endpoints: { reimburse: { input: Claim, output: Txn, handler: async (req) => (seen.push(req.claimId), { txn: "T", by: "payments" }) } },
    });
    const mallory = await as("mallory");
    const t0 = Date.now();
    const e = await meshFailure(mallory.call("payments@^2", "reimburse", { claimId: "X2", usd: 1 }, { timeoutMs: 5000 }));
    assert.equal(e.code, "FORBIDDEN", e.message);
    assert.deepEqual(e.details, { subject: "svc.payments.v2.reimburse" });
    assert.ok(Date.now() - t0 < 1000, `failed after ${Date.now() - t0} ms`);
    assert.deepEqual(seen, []);
  });
});

describe("with raw nats.js, the server refuses", () => {
  test("a request to an endpoint the plan does not grant: PERMISSIONS_VIOLATION", async () => {
    const nc = await rawAs("claims", "_INBOX_claims");
    await assert.rejects(nc.request("svc.payments.v2.refund", new Uint8Array(), { timeout: 3000 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, ErrorCode.PermissionsViolation);
      assert.match(e.message, /Permissions Violation for Publish to "svc\.payments\.v2\.refund"/);
      return true;
    });
    // The shared inbox is not this user's: a request with the default prefix is refused too.
    const shared = await rawAs("claims");
    await assert.rejects(shared.request("svc.payments.v2.reimburse", new Uint8Array(), { timeout: 3000 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, ErrorCode.PermissionsViolation);
      assert.match(e.message, /Subscription to "_INBOX\./);
      return true;
    });
  });

  test("a subscription to another service's subject, to steal its requests: closed with a permissions error; the real service gets every request", async () => {
    const thief = await rawAs("mallory", "_INBOX_mallory");
    const stolen: string[] = [];
    const subs = [
      thief.subscribe("svc.payments.v2.reimburse", { queue: "svc-payments-v2" }),
      thief.subscribe("svc.payments.>"),
      thief.subscribe("_INBOX_claims.>"),
    ];
    const ends = subs.map(async (sub) => {
      try {
        for await (const m of sub) stolen.push(m.subject);
        return undefined;
      } catch (e) {
        return e as Error & { code?: string };
      }
    });
    const errors = await Promise.race([Promise.all(ends), sleep(3000).then(() => undefined)]);
    assert.ok(errors, "every thief subscription ended");
    for (const [i, e] of errors.entries()) {
      assert.equal(e?.code, ErrorCode.PermissionsViolation, `subscription ${subs[i]!.getSubject()}`);
      assert.match(e!.message, /Permissions Violation for Subscription to/);
      assert.equal(subs[i]!.isClosed(), true);
    }
    const before = handled.length;
    const ids = Array.from({ length: 20 }, (_, i) => `S${i}`);
    const outs = await Promise.all(ids.map((claimId) => claims.call("payments@^2", "reimburse", { claimId, usd: 1 }, { timeoutMs: 3000 })));
    assert.deepEqual(outs, ids.map((id) => ({ txn: "T-" + id, by: "payments" })));
    assert.deepEqual(handled.slice(before).sort(), [...ids].sort());
    assert.deepEqual(stolen, []);
  });

  test("a plain publish to another service's endpoint never reaches it (the only sign is a status event)", async () => {
    const nc = await rawAs("mallory", "_INBOX_mallory");
    const before = handled.length;
    for (let i = 0; i < 5; i++) nc.publish("svc.payments.v2.reimburse", new TextEncoder().encode(`forged ${i}`));
    nc.publish("svc.events.instance_started.payments", new Uint8Array()); // a forged announcement, too
    await nc.flush();
    const until = Date.now() + 2000;
    while (violations(nc).length < 6 && Date.now() < until) await sleep(20);
    await sleep(200);
    assert.equal(handled.length, before, "the victim saw nothing");
    const subjects = violations(nc).map((s) => (s as Status & { permissionContext?: { subject: string } }).permissionContext?.subject);
    assert.ok(subjects.includes("svc.payments.v2.reimburse"), JSON.stringify(subjects));
    assert.ok(subjects.includes("svc.events.instance_started.payments"), JSON.stringify(subjects));
  });

  test("the policy bucket: a service watches and reads it, but cannot write it", async () => {
    const ops = await rawAs("ops", "_INBOX");
    const admin = await ops.jetstream().views.kv("svcmesh_policies", { history: 5 });
    await admin.put("policy", new TextEncoder().encode("v1"));
    const nc = await rawAs("payments", "_INBOX_payments");
    const kv = await nc.jetstream().views.kv("svcmesh_policies", { bindOnly: true });
    const seen: string[] = [];
    const watcher = await kv.watch({ key: "policy" });
    void (async () => {
      for await (const e of watcher) seen.push(new TextDecoder().decode(e.value));
    })();
    await admin.put("policy", new TextEncoder().encode("v2"));
    assert.equal(new TextDecoder().decode((await kv.get("policy"))!.value), "v2");
    const until = Date.now() + 3000;
    while (seen.length < 2 && Date.now() < until) await sleep(20);
    assert.deepEqual(seen, ["v1", "v2"]);
    await assert.rejects(kv.put("policy", new TextEncoder().encode("allow everyone")), /Permissions Violation for Publish to "\$KV\.svcmesh_policies\.policy"/);
    watcher.stop();
    assert.deepEqual(violations(nc).map((s) => (s as Status & { permissionContext?: { subject: string } }).permissionContext?.subject), ["$KV.svcmesh_policies.policy"]);
  });

  test("a service that may call nothing still discovers its own instances (its rate limiter counts them), without a violation", async () => {
    const nc = await rawAs("payments", "_INBOX_payments");
    const reply = await nc.request("$SRV.INFO.payments", new Uint8Array(), { timeout: 3000 });
    assert.equal((JSON.parse(new TextDecoder().decode(reply.data)) as { name: string }).name, "payments");
    assert.deepEqual(violations(nc), []);
  });

  test("a service whose subscriptions the server refuses (serving a name its credentials do not cover) says so through svc.stopped", async () => {
    const m = await meshAs("mallory");
    const svc = await m.serve({ name: "payments", version: "9.0.0", endpoints: { steal: { handler: () => "stolen" } } });
    const outcome = await Promise.race([svc.stopped, sleep(5_000).then(() => "still serving" as const)]);
    assert.ok(outcome instanceof Error, `stopped with an error, got ${String(outcome)}`);
    assert.match(outcome.message, /Permissions Violation|permission/i);
  });

  test("a service cannot create the mesh's streams (it could make the audit trail keep nothing, or capture others' requests)", async () => {
    const nc = await rawAs("claims", "_INBOX_claims");
    const jsm = await nc.jetstreamManager({ timeout: 1_000 });
    await assert.rejects(jsm.streams.add({ name: "SVC_AUDIT", subjects: ["svc.audit.claims", "svc.payments.>"], max_msgs: 1 }));
    await sleep(100);
    assert.deepEqual(violations(nc).map((s) => (s as Status & { permissionContext?: { subject: string } }).permissionContext?.subject), ["$JS.API.STREAM.CREATE.SVC_AUDIT"]);
  });

  test("an operator user is unrestricted", async () => {
    const nc = await rawAs("ops", "_INBOX");
    const reply = await nc.request("$SRV.INFO.payments", new Uint8Array(), { timeout: 3000 });
    assert.equal((JSON.parse(new TextDecoder().decode(reply.data)) as { name: string }).name, "payments");
  });
});
