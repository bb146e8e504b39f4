// The policy store against a real nats-server with JetStream: apply validates and
// stores, get reads the policy in force, watchers see the initial one and every change
// (delays printed, never asserted), garbage written around `apply` is ignored.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection, nkeyAuthenticator } from "nats";
import { createUser } from "nkeys.js";
import { pino } from "pino";
import { natsAuthorizationConfig } from "../src/broker/nats-config.ts";
import { isMeshError } from "../src/errors.ts";
import { decodeBody } from "../src/wire.ts";
import {
  applyPolicy,
  getPolicy,
  POLICY_APPLIED_SUBJECT,
  POLICY_BUCKET,
  POLICY_KEY,
  type PolicyError,
  type PolicyWatcher,
  type StoredPolicy,
  watchPolicy,
} from "../src/policy/index.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

const CLAIMS = "UB7P3EE5LR4P3MQPQRK7C3MR27EVUAYU65RKDAN54OHAMINCATBDUSD7";
const PAYMENTS = "UBOYHG7ZGBVUY7V3C6GWNQAOHLBVVU5AP5FEKASRUQVS5L6Q4LHBVMW3";

const doc = (canary: number) => `version: 1
identities:
  claims:   { key: ${CLAIMS}, roles: [CLAIMS_CLERK] }
  payments: { key: ${PAYMENTS} }
services:
  payments:
    allow: [claims]            # everyone else is denied
    traffic: { "2.1.0": ${100 - canary}, "2.2.0": ${canary} }
`;

const INVALID = `version: 1
services:
  payments:
    allow: claims
    timeoutMs: -5
`;

let server: NatsServer;
let nc: NatsConnection;
const logger = pino({ level: process.env.SVCMESH_LOG_LEVEL ?? "silent" });

before(async () => {
  server = await startNatsServer({ jetstream: true });
  nc = await natsConnect({ servers: server.url });
});

const watchers: PolicyWatcher[] = [];

after(async () => {
  await Promise.allSettled(watchers.map((w) => w.stop()));
  await nc?.close();
  await server?.stop();
});

/** A watcher recording what it delivered and when. */
function record() {
  const seen: { at: number; policy: StoredPolicy | undefined }[] = [];
  const watcher = watchPolicy(nc, (policy) => seen.push({ at: performance.now(), policy }), logger);
  watchers.push(watcher);
  return { seen, watcher };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await sleep(5);
  }
}

describe("policy store", () => {
  test("before anything is applied: no bucket, no policy, watchers hear 'none' and then the first apply", async () => {
    assert.equal(await getPolicy(nc), undefined);
    const { seen, watcher } = record();
    await until(() => seen.length === 1);
    assert.equal(seen[0]!.policy, undefined, "no bucket yet: the mesh is open");

    const events: unknown[] = [];
    const sub = nc.subscribe(POLICY_APPLIED_SUBJECT, { callback: (_e, m) => events.push(decodeBody(m.data)) });
    await nc.flush();

    const t0 = performance.now();
    const applied = await applyPolicy(nc, doc(10), { by: "ops-test" });
    assert.ok(applied.revision > 0);
    assert.equal(applied.policy.services?.payments?.traffic?.["2.2.0"], 10);
    await until(() => seen.length === 2);
    // The bucket did not exist when this watcher started: it found it by polling (bounded backoff).
    console.log(`# watcher started before the bucket existed saw the first policy after ${(seen[1]!.at - t0).toFixed(1)} ms`);
    assert.equal(seen[1]!.policy?.revision, applied.revision);
    await until(() => events.length === 1);
    const ev = events[0] as Record<string, unknown>;
    assert.equal(ev.type, "policy_applied");
    assert.equal(ev.service, "_mesh");
    assert.equal(ev.revision, applied.revision);
    assert.equal(ev.by, "ops-test");
    assert.equal(ev.sha, applied.sha);
    sub.unsubscribe();
    await watcher.stop();
  });

  test("apply valid → get returns its text and revision", async () => {
    const applied = await applyPolicy(nc, doc(20), { by: "ops-test" });
    const got = await getPolicy(nc);
    assert.ok(got);
    assert.equal(got.revision, applied.revision);
    assert.equal(got.text, doc(20), "stored as written, comments and all");
    assert.deepEqual(got.policy, applied.policy);
    const info = await (await nc.jetstreamManager()).streams.info(`KV_${POLICY_BUCKET}`);
    assert.ok(info.config.max_msgs_per_subject >= 5, `history ${info.config.max_msgs_per_subject}`);
  });

  test("apply invalid → BAD_REQUEST with line-level errors; nothing stored, the previous one stays", async () => {
    const before = await getPolicy(nc);
    assert.ok(before);
    await assert.rejects(applyPolicy(nc, INVALID, { by: "ops-test" }), (e: unknown) => {
      assert.ok(isMeshError(e));
      assert.equal(e.code, "BAD_REQUEST");
      const errors = (e.details as { errors: PolicyError[] }).errors;
      assert.deepEqual(errors.map((x) => [x.line, x.path]), [[4, "services.payments.allow"], [5, "services.payments.timeoutMs"]]);
      assert.ok(errors.every((x) => x.column > 0));
      return true;
    });
    const afterwards = await getPolicy(nc);
    assert.equal(afterwards?.revision, before.revision);
    assert.equal(afterwards?.text, before.text);
  });

  test("ifRevision: a stale apply is refused", async () => {
    const current = (await getPolicy(nc))!;
    await assert.rejects(applyPolicy(nc, doc(30), { by: "ops-test", ifRevision: current.revision - 1 }), (e: unknown) => isMeshError(e) && e.code === "BAD_REQUEST");
    const ok = await applyPolicy(nc, doc(30), { by: "ops-test", ifRevision: current.revision });
    assert.equal((await getPolicy(nc))?.revision, ok.revision);
  });

  test("watch: the current policy first, then each change (delay printed)", async () => {
    const current = (await getPolicy(nc))!;
    const { seen, watcher } = record();
    await until(() => seen.length === 1);
    assert.equal(seen[0]!.policy?.revision, current.revision);
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const applied = await applyPolicy(nc, doc(40 + i), { by: "ops-test" });
      await until(() => seen.at(-1)!.policy?.revision === applied.revision);
      delays.push(seen.at(-1)!.at - t0);
      assert.equal(seen.at(-1)!.policy?.policy.services?.payments?.traffic?.["2.2.0"], 40 + i);
    }
    console.log(`# apply → watcher (apply call included): ${delays.map((d) => d.toFixed(1)).join(", ")} ms`);
    assert.equal(seen.length, 6, "one delivery per change, nothing twice");
    await watcher.stop();
  });

  test("a raw KV put of garbage is ignored: the last good policy stays in force", async () => {
    const good = await applyPolicy(nc, doc(50), { by: "ops-test" });
    const { seen, watcher } = record();
    await until(() => seen.length === 1);
    const kv = await nc.jetstream().views.kv(POLICY_BUCKET, { bindOnly: true });
    await kv.put(POLICY_KEY, new TextEncoder().encode("allow: everyone\n  : [broken"));
    await kv.put(POLICY_KEY, new TextEncoder().encode(INVALID));
    await sleep(300);
    assert.equal(seen.length, 1, "garbage is never delivered");
    assert.equal((await getPolicy(nc))?.revision, good.revision, "get skips it too");

    // A new watcher, started while garbage is the latest value, starts from the last good one.
    const late = record();
    await until(() => late.seen.length === 1);
    assert.equal(late.seen[0]!.policy?.revision, good.revision);

    const next = await applyPolicy(nc, doc(60), { by: "ops-test" });
    await until(() => seen.length === 2 && late.seen.length === 2);
    assert.equal(seen[1]!.policy?.revision, next.revision);
    assert.equal(late.seen[1]!.policy?.revision, next.revision);
    await Promise.all([watcher.stop(), late.watcher.stop()]);
  });

  test("a deleted key means no policy (open mesh); a later apply is seen", async () => {
    const { seen, watcher } = record();
    await until(() => seen.length === 1);
    assert.ok(seen[0]!.policy);
    const kv = await nc.jetstream().views.kv(POLICY_BUCKET, { bindOnly: true });
    await kv.delete(POLICY_KEY);
    await until(() => seen.length === 2);
    assert.equal(seen[1]!.policy, undefined);
    assert.equal(await getPolicy(nc), undefined);
    const applied = await applyPolicy(nc, doc(70), { by: "ops-test" });
    await until(() => seen.length === 3);
    assert.equal(seen[2]!.policy?.revision, applied.revision);
    await watcher.stop();
  });

  test("a watcher survives a server restart and sees the next change", async () => {
    const wnc = await natsConnect({ servers: server.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    const seen: (StoredPolicy | undefined)[] = [];
    const watcher = watchPolicy(wnc, (p) => seen.push(p), logger);
    watchers.push(watcher);
    await until(() => seen.length === 1);
    await nc.close();
    await server.stop();
    await server.restart();
    nc = await natsConnect({ servers: server.url });
    // JetStream needs a moment after a restart before the bucket answers.
    let applied: Awaited<ReturnType<typeof applyPolicy>> | undefined;
    for (let i = 0; i < 50 && !applied; i++) {
      applied = await applyPolicy(nc, doc(80), { by: "ops-test" }).catch(() => undefined);
      if (!applied) await sleep(100);
    }
    assert.ok(applied, "apply after restart");
    const t0 = performance.now();
    await until(() => seen.at(-1)?.revision === applied.revision, 15_000);
    console.log(`# after a server restart: the watcher saw the next apply ${(performance.now() - t0).toFixed(1)} ms after it returned`);
    await watcher.stop();
    await wnc.close();
  });
});

describe("policy store under the generated broker config (services read-only)", () => {
  const payments = createUser();
  const ops = createUser();
  let locked: NatsServer;
  const conns: NatsConnection[] = [];
  const as = async (user: typeof ops, inboxPrefix: string) => {
    const c = await natsConnect({ servers: locked.url, authenticator: nkeyAuthenticator(user.getSeed()), inboxPrefix });
    conns.push(c);
    return c;
  };

  before(async () => {
    locked = await startNatsServer({
      jetstream: true,
      extraConfig: natsAuthorizationConfig({
        services: { payments: { key: payments.getPublicKey() } },
        operators: { ops: { key: ops.getPublicKey() } },
        // No policyBucket: the default grant is the library's bucket.
      }),
    });
  });
  after(async () => {
    await Promise.allSettled(conns.map((c) => c.close()));
    await locked?.stop();
  });

  test("a service watches and reads with its grants (bucket missing at first), and cannot apply", async () => {
    const svc = await as(payments, "_INBOX_payments");
    const admin = await as(ops, "_INBOX");
    assert.equal(await getPolicy(svc), undefined, "no bucket: no policy");
    const seen: (StoredPolicy | undefined)[] = [];
    const watcher = watchPolicy(svc, (p) => seen.push(p), logger);
    watchers.push(watcher);
    await until(() => seen.length === 1);
    assert.equal(seen[0], undefined);

    const first = await applyPolicy(admin, doc(10), { by: "ops" });
    await until(() => seen.length === 2);
    assert.equal(seen[1]?.revision, first.revision);
    const second = await applyPolicy(admin, doc(20), { by: "ops" });
    await until(() => seen.length === 3);
    assert.equal(seen[2]?.revision, second.revision);
    assert.equal((await getPolicy(svc))?.revision, second.revision);

    await assert.rejects(applyPolicy(svc, doc(99), { by: "payments" }), (e: unknown) => isMeshError(e) && e.code === "FORBIDDEN");
    assert.equal((await getPolicy(admin))?.revision, second.revision);
    await watcher.stop();
  });

  test("a service refused the bucket (a config that grants none) logs one error saying no policy is enforced, not one per retry", async () => {
    const shut = await startNatsServer({
      jetstream: true,
      extraConfig: natsAuthorizationConfig({ services: { payments: { key: payments.getPublicKey() } }, policyBucket: null }),
    });
    try {
      const svc = await natsConnect({ servers: shut.url, authenticator: nkeyAuthenticator(payments.getSeed()), inboxPrefix: "_INBOX_payments" });
      const lines: Array<{ level: number; msg: string }> = [];
      const capture = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
      const watcher = watchPolicy(svc, () => undefined, capture);
      await sleep(2_500); // retries at 250, 500, 1000 ms...: several refusals
      await watcher.stop();
      await svc.close();
      const errors = lines.filter((l) => l.level >= 50);
      assert.equal(errors.length, 1, JSON.stringify(lines));
      assert.match(errors[0]!.msg, /permissions do not let this connection read the policy bucket svcmesh_policies; no policy is enforced here/);
      assert.equal(lines.length, 1, "the repeats are held back");
    } finally {
      await shut.stop();
    }
  });

  test("a server without JetStream: 'none' at once, and one info line (no warning, no stack) however often it looks again", async () => {
    const plain = await startNatsServer({});
    try {
      const svc = await natsConnect({ servers: plain.url });
      const lines: Array<{ level: number; msg: string; err?: unknown }> = [];
      const capture = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
      const heard: Array<StoredPolicy | undefined> = [];
      const watcher = watchPolicy(svc, (p) => heard.push(p), capture);
      await sleep(2_500); // looks again at 250, 500, 1000 ms...
      await watcher.stop();
      await svc.close();
      assert.deepEqual(heard, [undefined], "the mesh is open, said once");
      const loud = lines.filter((l) => l.level >= 40);
      assert.deepEqual(loud, [], "no warning or error for a development server without JetStream");
      const info = lines.filter((l) => l.level === 30);
      assert.equal(info.length, 1, JSON.stringify(lines));
      assert.match(info[0]!.msg, /no JetStream on this NATS server: no policy can be stored, so the mesh is open/);
      assert.equal(info[0]!.err, undefined, "no stack trace");
    } finally {
      await plain.stop();
    }
  });
});
