// policy.required (SVCMESH_POLICY_REQUIRED) against real nats-servers: a process that
// cannot have a policy in force does not start, one whose policy goes away refuses the
// calls it serves and makes until a policy is back, and a seed the policy does not
// register is said once per revision (and fails connect() under required).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, afterEach, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection, nkeyAuthenticator } from "nats";
import { createUser } from "nkeys.js";
import { pino, type Logger } from "pino";
import { applyPolicy, connect, type ConnectOptions, type Mesh, natsAuthorizationConfig, newIdentity, POLICY_BUCKET } from "svcmesh";
import { POLICY_KEY } from "../src/policy/store.ts";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { freePort, type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { waitFor } from "../../../test/helpers/wait.ts";

const ids = { claims: newIdentity(), payments: newIdentity(), stranger: newIdentity(), tourist: newIdentity(), "ledger-host": newIdentity() };

// Allow lists name registered identities: every mesh below connects with its seed.
const policy = (extra = "") => `
version: 1
identities:
  claims:      { key: ${ids.claims.publicKey} }
  payments:    { key: ${ids.payments.publicKey} }
  tourist:     { key: ${ids.tourist.publicKey} }
  ledger-host: { key: ${ids["ledger-host"].publicKey} }
services:
  payments:
    allow: [claims]
  ledger:
    allow: [claims]
${extra}`;

const withIdentities = (claimsKey: string, note = "") => `
version: 1
# ${note}
identities:
  claims:   { key: ${claimsKey} }
  payments: { key: ${ids.payments.publicKey} }
defaults:
  allow: ["*"]
`;

interface Line { level: number; msg: string }
const ERROR = 50;
const WARN = 40;
const INFO = 30;

function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
  return { logger, lines };
}

const open: Mesh[] = [];
async function mesh(server: NatsServer, options: Omit<ConnectOptions, "servers">): Promise<Mesh> {
  const m = await connect({ servers: server.url, logLevel: "silent", ...options });
  open.push(m);
  return m;
}

/** Names of the clients connected to `server` (its monitoring endpoint). */
async function clientNames(server: NatsServer): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${server.monitorPort}/connz`);
  const body = (await res.json()) as { connections?: { name?: string }[] };
  return (body.connections ?? []).map((c) => c.name ?? "");
}

/** Runs `body` (ESM, svcmesh imported as `connect`) in a child process; it must exit by itself. */
function inChild(body: string): string {
  const script = `import { connect } from "svcmesh";\n${body}`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: import.meta.dirname,
    encoding: "utf8",
    timeout: 15_000,
    env: { ...process.env, SVCMESH_LOG_LEVEL: "silent" },
  });
  assert.equal(r.signal, null, `it exited by itself, within 15 s (stderr: ${r.stderr})`);
  return r.stdout.trim();
}

/** Sets SVCMESH_POLICY_REQUIRED for one test; afterEach puts the old value back. */
const envBefore = process.env.SVCMESH_POLICY_REQUIRED;
function setEnv(value: string | undefined): void {
  if (value === undefined) delete process.env.SVCMESH_POLICY_REQUIRED;
  else process.env.SVCMESH_POLICY_REQUIRED = value;
}
afterEach(() => setEnv(envBefore));

/** Closes this describe's meshes while their server still runs (closing in an outage waits out a budget). */
async function closeOpen(): Promise<void> {
  await Promise.allSettled(open.splice(0).map((m) => m.close()));
}

describe("connect() with policy.required and no policy to be had", () => {
  let empty: NatsServer; // JetStream, no policy bucket
  let bare: NatsServer; // no JetStream
  before(async () => {
    [empty, bare] = await Promise.all([startNatsServer({ jetstream: true }), startNatsServer()]);
  });
  after(async () => {
    await closeOpen();
    await Promise.all([empty.stop(), bare.stop()]);
  });

  test("no bucket: UNAVAILABLE saying nothing has been applied and that policy.required is set; its connection is closed", async () => {
    const e = await meshFailure(connect({ servers: empty.url, name: "req-no-bucket", logLevel: "silent", policy: { required: true, waitMs: 300 } }));
    assert.equal(e.code, "UNAVAILABLE");
    assert.match(e.message, /no policy has been applied \(there is no bucket svcmesh_policies\)/);
    assert.match(e.message, /policy\.required is set/);
    await waitFor("the failed connection to leave the server", async () => !(await clientNames(empty)).includes("req-no-bucket"), 3_000);
  });

  test("a process whose connect() failed so can exit", () => {
    const out = inChild(`try { await connect({ servers: ${JSON.stringify(empty.url)}, name: "req-child", policy: { required: true, waitMs: 300 } }); console.log("connected"); }
      catch (e) { console.log(e.code); }`);
    assert.equal(out, "UNAVAILABLE");
  });

  test("no JetStream: UNAVAILABLE saying so", async () => {
    const e = await meshFailure(connect({ servers: bare.url, name: "req-no-js", logLevel: "silent", policy: { required: true, waitMs: 300 } }));
    assert.equal(e.code, "UNAVAILABLE");
    assert.match(e.message, /no JetStream on this NATS server/);
    assert.match(e.message, /policy\.required is set/);
    await waitFor("the failed connection to leave the server", async () => !(await clientNames(bare)).includes("req-no-js"), 3_000);
  });

  test("a server whose permissions refuse the policy bucket: FORBIDDEN at once (waiting will not mend it), saying the server refuses it", async () => {
    const payments = createUser();
    const shut = await startNatsServer({
      jetstream: true,
      extraConfig: natsAuthorizationConfig({ services: { payments: { key: payments.getPublicKey() } }, policyBucket: null }),
    });
    try {
      const seed = new TextDecoder().decode(payments.getSeed());
      const started = Date.now();
      const e = await meshFailure(connect({ servers: shut.url, name: "payments", seed, logLevel: "silent", policy: { required: true, waitMs: 20_000 } }));
      assert.ok(Date.now() - started < 10_000, `failed after ${Date.now() - started} ms, not at the first refusal`);
      assert.equal(e.code, "FORBIDDEN");
      assert.match(e.message, /the NATS server's permissions do not let this connection read the policy bucket svcmesh_policies/);
      assert.match(e.message, /policy\.required is set/);
      assert.match(e.message, /its own seed \(name "payments"\)/);
      await waitFor("the failed connection to leave the server", async () => !(await clientNames(shut)).includes("payments"), 3_000);
    } finally {
      await shut.stop();
    }
  });

  test("not required: the same servers give an open mesh, as before", async () => {
    const m = await mesh(empty, { name: "req-open", policy: { waitMs: 300 } });
    assert.equal(m.policy.inForce, undefined);
    assert.equal(m.policy.required, false);
    await m.serve({ name: "open-echo", version: "1.0.0", endpoints: { ping: { handler: (_r, ctx) => `pong ${ctx.caller}` } } });
    assert.equal(await m.call("open-echo", "ping"), "pong req-open");
  });
});

describe("SVCMESH_POLICY_REQUIRED and the option", () => {
  let empty: NatsServer;
  const nowhere = "nats://127.0.0.1:1"; // a bad value must fail before dialling
  before(async () => {
    empty = await startNatsServer({ jetstream: true });
  });
  after(async () => {
    await closeOpen();
    await empty.stop();
  });

  test("a bad value is BAD_REQUEST naming the variable, before anything dials", async () => {
    for (const value of ["yes", "2", "on", "required"]) {
      setEnv(value);
      const e = await meshFailure(connect({ servers: nowhere, name: "req-env-bad", logLevel: "silent" }));
      assert.equal(e.code, "BAD_REQUEST", value);
      assert.match(e.message, /SVCMESH_POLICY_REQUIRED must be 1 or true .* 0 or false/, value);
      assert.ok(e.message.includes(JSON.stringify(value)), e.message);
    }
  });

  test("1 and true require a policy; 0, false and empty do not; the option wins over the variable", async () => {
    for (const value of ["1", "true", "TRUE"]) {
      setEnv(value);
      const e = await meshFailure(connect({ servers: empty.url, name: "req-env-on", logLevel: "silent", policy: { waitMs: 200 } }));
      assert.equal(e.code, "UNAVAILABLE", value);
      assert.match(e.message, /policy\.required is set/);
    }
    for (const value of ["0", "false", "", undefined]) {
      setEnv(value);
      const m = await mesh(empty, { name: "req-env-off", policy: { waitMs: 200 } });
      assert.equal(m.policy.required, false, String(value));
      await m.close();
    }
    setEnv("1");
    const m = await mesh(empty, { name: "req-env-overridden", policy: { waitMs: 200, required: false } });
    assert.equal(m.policy.required, false);
    setEnv("0");
    const e = await meshFailure(connect({ servers: empty.url, name: "req-env-option", logLevel: "silent", policy: { waitMs: 200, required: true } }));
    assert.equal(e.code, "UNAVAILABLE");
  });

  test("required with policy.watch false could never hold: BAD_REQUEST; a bad option value too", async () => {
    const e = await meshFailure(connect({ servers: nowhere, name: "req-nowatch", logLevel: "silent", policy: { watch: false, required: true } }));
    assert.equal(e.code, "BAD_REQUEST");
    assert.match(e.message, /policy\.required needs the policy watched, but policy\.watch is false/);
    setEnv("1");
    const fromEnv = await meshFailure(connect({ servers: nowhere, name: "req-nowatch", logLevel: "silent", policy: { watch: false } }));
    assert.equal(fromEnv.code, "BAD_REQUEST");
    assert.match(fromEnv.message, /policy\.required \(from SVCMESH_POLICY_REQUIRED\) needs the policy watched/);
    const bad = await meshFailure(connect({ servers: nowhere, name: "req-bad-option", logLevel: "silent", policy: { required: "yes" as unknown as boolean } }));
    assert.equal(bad.code, "BAD_REQUEST");
    assert.match(bad.message, /policy\.required/);
  });
});

describe("required, with a policy in force", () => {
  let server: NatsServer;
  let operator: NatsConnection;
  before(async () => {
    server = await startNatsServer({ jetstream: true });
    operator = await natsConnect({ servers: server.url });
  });
  after(async () => {
    await closeOpen();
    await operator.close();
    await server.stop();
  });

  test("connect() waits past 'nothing applied' for a policy applied meanwhile (the default wait with required is 10 s)", async () => {
    const started = Date.now();
    const connecting = connect({ servers: server.url, name: "claims", seed: ids.claims.seed, logLevel: "silent", policy: { required: true } });
    await sleep(2_500); // longer than the 2 s a mesh without required waits
    const applied = await applyPolicy(operator, policy(), { by: "test" });
    const m = await connecting;
    open.push(m);
    assert.equal(m.policy.inForce?.revision, applied.revision);
    assert.ok(Date.now() - started >= 2_500);
  });

  test("the key deleted or purged: calls served and made are refused UNAVAILABLE, one error logged; a new apply restores them, one info", async () => {
    const first = await applyPolicy(operator, policy(), { by: "test" });
    const hostLog = capture();
    const callerLog = capture();
    const host = await mesh(server, { name: "payments", seed: ids.payments.seed, logger: hostLog.logger, policy: { required: true } });
    await host.serve({ name: "payments", version: "1.0.0", endpoints: { pay: { handler: (_r, ctx) => `paid for ${ctx.caller}` } } });
    const openHost = await mesh(server, { name: "ledger-host", seed: ids["ledger-host"].seed, policy: { waitMs: 1_000 } }); // not required
    await openHost.serve({ name: "ledger", version: "1.0.0", endpoints: { read: { handler: (_r, ctx) => `read for ${ctx.caller}` } } });
    const claims = await mesh(server, { name: "claims", seed: ids.claims.seed, logger: callerLog.logger, policy: { required: true } });
    const tourist = await mesh(server, { name: "tourist", seed: ids.tourist.seed, policy: { waitMs: 1_000 } }); // not required
    const once = { retry: { attempts: 1 } };
    for (const m of [host, openHost, claims, tourist]) assert.equal(m.policy.inForce?.revision, first.revision);

    // In force: enforced as ever.
    assert.equal(await claims.call("payments", "pay"), "paid for claims");
    assert.equal((await meshFailure(tourist.call("payments", "pay", undefined, once))).code, "FORBIDDEN");
    assert.equal((await meshFailure(tourist.call("ledger", "read", undefined, once))).code, "FORBIDDEN");

    const kv = await operator.jetstream().views.kv(POLICY_BUCKET, { bindOnly: true });
    await kv.delete(POLICY_KEY);
    await waitFor("every mesh to see no policy", () => [host, openHost, claims, tourist].every((m) => m.policy.inForce === undefined));

    // Required: calls made fail here, calls served fail at the callee.
    const made = await meshFailure(claims.call("payments", "pay", undefined, once));
    assert.equal(made.code, "UNAVAILABLE");
    assert.match(made.message, /^call to payments\.pay: no policy in force and policy\.required is set/);
    const served = await meshFailure(tourist.call("payments", "pay", undefined, once));
    assert.equal(served.code, "UNAVAILABLE");
    assert.match(served.message, /^payments\.pay: no policy in force and policy\.required is set/);
    // Not required: an open mesh, as before.
    assert.equal(await tourist.call("ledger", "read", undefined, once), "read for tourist");
    assert.equal(await claims.call("ledger", "read", undefined, once).catch((e: Error) => e.message), "call to ledger.read: no policy in force and policy.required is set; refused until a policy is applied (svcmesh apply)");

    const losses = (lines: Line[]) => lines.filter((l) => l.level === ERROR && /no policy is in force any more/.test(l.msg));
    const errors = () => losses(hostLog.lines);
    await waitFor("the host's error", () => errors().length === 1);
    assert.match(errors()[0]!.msg, /^policy\.required is set and no policy is in force any more: no policy has been applied .*deleted or purged\)\. Calls this process serves and makes are refused UNAVAILABLE/);

    const second = await applyPolicy(operator, policy(), { by: "test" });
    await waitFor("every mesh to see the new policy", () => [host, openHost, claims, tourist].every((m) => m.policy.inForce?.revision === second.revision));
    assert.equal(await claims.call("payments", "pay"), "paid for claims");
    assert.equal((await meshFailure(tourist.call("payments", "pay", undefined, once))).code, "FORBIDDEN");
    const back = hostLog.lines.filter((l) => l.level === INFO && /a policy is in force again/.test(l.msg));
    assert.equal(back.length, 1, JSON.stringify(hostLog.lines));

    await kv.purge(POLICY_KEY);
    await waitFor("the purge to be seen", () => [host, openHost, claims, tourist].every((m) => m.policy.inForce === undefined));
    assert.equal((await meshFailure(claims.call("payments", "pay", undefined, once))).code, "UNAVAILABLE");
    assert.equal((await meshFailure(tourist.call("payments", "pay", undefined, once))).code, "UNAVAILABLE");
    const third = await applyPolicy(operator, policy(), { by: "test" });
    await waitFor("the third policy", () => [host, openHost, claims, tourist].every((m) => m.policy.inForce?.revision === third.revision));
    assert.equal(await claims.call("payments", "pay"), "paid for claims");
    assert.equal(errors().length, 2, "one error per loss");
    assert.equal(losses(callerLog.lines).length, 2);
    assert.equal(callerLog.lines.filter((l) => l.level === INFO && /a policy is in force again/.test(l.msg)).length, 2);
  });
});

describe("a watch failure after a policy was read", () => {
  test("keeps that policy in force (required or not): the server replaced by one without JetStream", async () => {
    const port = await freePort();
    const withJs = await startNatsServer({ jetstream: true, port });
    let noJs: NatsServer | undefined;
    const meshes: Mesh[] = [];
    const on = async (name: string, options: Omit<ConnectOptions, "servers" | "name"> = {}) => {
      const m = await connect({ servers: withJs.url, name, logLevel: "silent", ...options });
      meshes.push(m);
      return m;
    };
    try {
      const operator = await natsConnect({ servers: withJs.url });
      const applied = await applyPolicy(operator, policy(), { by: "test" });
      await operator.close();
      const log = capture();
      const host = await on("payments", { seed: ids.payments.seed, policy: { required: true } });
      await host.serve({ name: "payments", version: "1.0.0", endpoints: { pay: { handler: (_r, ctx) => `paid for ${ctx.caller}` } } });
      const claims = await on("claims", { seed: ids.claims.seed, logger: log.logger, policy: { required: true } });
      const tourist = await on("tourist", { seed: ids.tourist.seed });

      await withJs.stop();
      noJs = await startNatsServer({ port });
      const noJsLine = () => log.lines.find((l) => /no JetStream on this NATS server/.test(l.msg));
      await waitFor("the watcher to meet the server without JetStream", () => noJsLine() !== undefined);
      for (const m of [host, claims, tourist]) assert.equal(m.policy.inForce?.revision, applied.revision, m.name);
      assert.equal(noJsLine()!.level, WARN);
      assert.match(noJsLine()!.msg, /the last one read stays in force/);
      assert.ok(!log.lines.some((l) => /no policy is in force any more/.test(l.msg)), JSON.stringify(log.lines));
      await waitFor("discovery on the new server", async () => (await claims.call("payments", "pay").catch(() => undefined)) === "paid for claims");
      assert.equal((await meshFailure(tourist.call("payments", "pay", undefined, { retry: { attempts: 1 } }))).code, "FORBIDDEN");
    } finally {
      await Promise.allSettled(meshes.map((m) => m.close()));
      await withJs.stop();
      await noJs?.stop();
    }
  });
});

describe("a grant to the policy bucket taken away after a policy was read", () => {
  test("keeps that policy in force and says so (not that no policy is enforced)", async () => {
    const port = await freePort();
    const ops = newIdentity();
    const plan = { services: { claims: { key: ids.claims.publicKey } }, operators: { ops: { key: ops.publicKey } } };
    const granting = await startNatsServer({ jetstream: true, port, extraConfig: natsAuthorizationConfig(plan) });
    let refusing: NatsServer | undefined;
    let claims: Mesh | undefined;
    try {
      const operator = await natsConnect({ servers: granting.url, authenticator: nkeyAuthenticator(new TextEncoder().encode(ops.seed)) });
      const applied = await applyPolicy(operator, policy(), { by: "test" });
      await operator.close();
      const log = capture();
      claims = await connect({ servers: granting.url, name: "claims", seed: ids.claims.seed, logger: log.logger });
      await waitFor("the policy to be read", () => claims!.policy.inForce?.revision === applied.revision);

      // The same address, now with a config that no longer grants the bucket.
      await granting.stop();
      refusing = await startNatsServer({ jetstream: true, port, extraConfig: natsAuthorizationConfig({ ...plan, policyBucket: null }) });
      const refusal = () => log.lines.find((l) => l.level === ERROR && /permissions do not let this connection read the policy bucket/.test(l.msg));
      await waitFor("the watcher to be refused the bucket", () => refusal() !== undefined, 15_000);
      assert.match(refusal()!.msg, new RegExp(`the policy read before \\(revision ${applied.revision}\\) stays in force and later changes are not followed`));
      assert.doesNotMatch(refusal()!.msg, /no policy is enforced/);
      assert.equal(claims.policy.inForce?.revision, applied.revision);
    } finally {
      await claims?.close();
      await granting.stop();
      await refusing?.stop();
    }
  });
});

describe("the seed and the identity the policy registers for this name", () => {
  let server: NatsServer;
  let operator: NatsConnection;
  before(async () => {
    server = await startNatsServer({ jetstream: true });
    operator = await natsConnect({ servers: server.url });
    await applyPolicy(operator, withIdentities(ids.claims.publicKey, "first"), { by: "test" });
  });
  after(async () => {
    await closeOpen();
    await operator.close();
    await server.stop();
  });
  const problems = (lines: Line[], level: number) => lines.filter((l) => l.level === level && /UNAUTHENTICATED/.test(l.msg));

  test("another key registered for this name: one error per policy revision, saying how to fix it", async () => {
    const log = capture();
    const m = await mesh(server, { name: "claims", seed: ids.stranger.seed, logger: log.logger });
    const errors = () => problems(log.lines, ERROR);
    assert.equal(errors().length, 1, JSON.stringify(log.lines));
    const msg = errors()[0]!.msg;
    assert.ok(msg.includes(`registers key ${ids.claims.publicKey} for "claims", not this process's seed's key ${ids.stranger.publicKey}`), msg);
    assert.ok(msg.includes(`svcmesh identity add claims ${ids.stranger.publicKey}`), msg);
    // Its calls are indeed refused so.
    await m.serve({ name: "echo", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    assert.equal((await meshFailure(m.call("echo", "ping", undefined, { retry: { attempts: 1 } }))).code, "UNAUTHENTICATED");

    const next = await applyPolicy(operator, withIdentities(ids.claims.publicKey, "second"), { by: "test" });
    await waitFor("the next revision", () => m.policy.inForce?.revision === next.revision);
    await sleep(100);
    m.policy.set(m.policy.inForce!.document, next.revision); // the same revision again: said already
    assert.equal(errors().length, 2, "one more for the new revision, no repeats");
    assert.match(errors()[1]!.msg, new RegExp(`revision ${next.revision}`));
    assert.equal(problems(log.lines, WARN).length, 0);
  });

  test("this name not registered at all: one error", async () => {
    const log = capture();
    await mesh(server, { name: "auditor", seed: ids.stranger.seed, logger: log.logger });
    const errors = problems(log.lines, ERROR);
    assert.equal(errors.length, 1, JSON.stringify(log.lines));
    assert.match(errors[0]!.msg, /registers no identity "auditor", so services refuse its calls as UNAUTHENTICATED: register this process's key with `svcmesh identity add auditor U/);
  });

  test("no seed: one warning that its calls will be refused; the registered seed: nothing", async () => {
    const noSeed = capture();
    await mesh(server, { name: "claims", logger: noSeed.logger });
    assert.equal(problems(noSeed.lines, WARN).length, 1, JSON.stringify(noSeed.lines));
    assert.match(problems(noSeed.lines, WARN)[0]!.msg, /has no seed: services that check identities refuse its calls as UNAUTHENTICATED/);
    assert.equal(problems(noSeed.lines, ERROR).length, 0);
    const right = capture();
    await mesh(server, { name: "claims", seed: ids.claims.seed, logger: right.logger });
    assert.deepEqual(right.lines.filter((l) => l.level >= WARN), []);
  });

  test("with required, the mismatch fails connect() UNAUTHENTICATED and closes its connection; the right seed connects", async () => {
    for (const [name, seed] of [["claims", ids.stranger.seed], ["inspector", ids.stranger.seed]] as const) {
      const e = await meshFailure(connect({ servers: server.url, name, seed, logLevel: "silent", policy: { required: true } }));
      assert.equal(e.code, "UNAUTHENTICATED", name);
      assert.match(e.message, /svcmesh identity add/);
      assert.match(e.message, /policy\.required is set/);
    }
    await waitFor("the failed connections to leave the server", async () => !(await clientNames(server)).includes("inspector"), 3_000);
    const out = inChild(`try { await connect({ servers: ${JSON.stringify(server.url)}, name: "claims", seed: ${JSON.stringify(ids.stranger.seed)}, policy: { required: true } }); console.log("connected"); }
      catch (e) { console.log(e.code); }`);
    assert.equal(out, "UNAUTHENTICATED");
    const m = await mesh(server, { name: "claims", seed: ids.claims.seed, policy: { required: true } });
    assert.ok(m.policy.inForce);
  });
});
