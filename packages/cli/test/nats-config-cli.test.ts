// `svcmesh nats-config`: the built CLI as a child process; its output is started as a
// real nats-server config and the mesh runs under it. Run `pnpm build` first.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { applyPolicy, connect, type Identity, isMeshError, type Mesh, newIdentity } from "svcmesh";
import { z } from "zod";
import { natsServerBinary, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { runCliOffline } from "./run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "svcmesh-nats-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const cli = runCliOffline;

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const ids: Record<"claims" | "payments" | "auth" | "ops", Identity> = { claims: newIdentity(), payments: newIdentity(), auth: newIdentity(), ops: newIdentity() };
const seeds = Object.values(ids).map((i) => i.seed);

const policyYaml = `version: 1
identities:
  claims: { key: ${ids.claims.publicKey} }
  payments: { key: ${ids.payments.publicKey} }
  auth: { key: ${ids.auth.publicKey} }
defaults:
  allow: []
services:
  payments:
    allow: []
    endpoints:
      reimburse: { allow: [claims] }
  auth:
    allow: [claims]
`;

const Claim = z.object({ claimId: z.string() });
const Out = z.object({ ok: z.string() });

/**
 * Starts a server with `config`, serves payments, calls it as claims: reimburse works,
 * refund is FORBIDDEN. With an operator seed, the policy is applied first, and a call
 * from the operator (whom the broker lets publish anything) must be refused by payments
 * itself: payments can read the policy under the generated config.
 */
async function exercise(config: string, seedOf: { claims: string; payments: string; ops?: string }): Promise<void> {
  const server = await startNatsServer({ jetstream: true, extraConfig: config });
  const meshes: Mesh[] = [];
  try {
    if (seedOf.ops) {
      const ops = await connect({ servers: server.url, name: "ops", seed: seedOf.ops, policy: { watch: false } });
      meshes.push(ops);
      await applyPolicy(ops.nc, policyYaml, { by: "test" });
    }
    const payments = await connect({ servers: server.url, name: "payments", seed: seedOf.payments });
    meshes.push(payments);
    await payments.serve({
      name: "payments",
      version: "1.0.0",
      endpoints: {
        reimburse: { input: Claim, output: Out, handler: async (r) => ({ ok: "T-" + r.claimId }) },
        refund: { input: Claim, output: Out, handler: async (r) => ({ ok: "R-" + r.claimId }) },
      },
    });
    const claims = await connect({ servers: server.url, name: "claims", seed: seedOf.claims });
    meshes.push(claims);
    assert.deepEqual(await claims.call("payments", "reimburse", { claimId: "C1" }, { timeoutMs: 3000 }), { ok: "T-C1" });
    await assert.rejects(claims.call("payments", "refund", { claimId: "C2" }, { timeoutMs: 5000 }), (e: unknown) => {
      assert.ok(isMeshError(e) && e.code === "FORBIDDEN", String(e));
      return true;
    });
    if (seedOf.ops) {
      const ops = meshes[0]!;
      await assert.rejects(ops.call("payments", "reimburse", { claimId: "C3" }, { timeoutMs: 5000, retry: { attempts: 1 } }), (e: unknown) => {
        assert.ok(isMeshError(e) && e.code === "UNAUTHENTICATED", String(e));
        return true;
      });
    }
  } finally {
    await Promise.allSettled(meshes.map((m) => m.close()));
    await server.stop();
  }
}

describe("svcmesh nats-config", () => {
  test("prints a config nats-server accepts (-t) and runs: allowed calls work, forbidden ones are refused", async () => {
    const p = file("policies.yaml", policyYaml);
    const r = cli(["nats-config", p, "--operator", `ops=${ids.ops.publicKey}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^authorization \{$/m);
    for (const s of ["claims", "payments", "auth"]) {
      assert.ok(r.stdout.includes(`connect({ servers, name: "${s}", seed })`), r.stdout);
      assert.ok(r.stdout.includes(`inbox prefix _INBOX_${s}`));
    }
    assert.ok(r.stdout.includes('"svc.payments.*.reimburse"'));
    assert.ok(!r.stdout.includes("refund"));
    for (const seed of seeds) assert.ok(!r.stdout.includes(seed), "no seed it did not generate");
    assert.ok(!/SU[A-Z2-7]{56}/.test(r.stdout));
    const conf = file("auth.conf", r.stdout);
    const t = spawnSync(natsServerBinary(), ["-t", "-c", conf], { encoding: "utf8" });
    assert.equal(t.status, 0, t.stderr + t.stdout);
    await exercise(r.stdout, { claims: ids.claims.seed, payments: ids.payments.seed, ops: ids.ops.seed });
  });

  test("--json: a file that cannot be read or is not a policy is one JSON error line with code BAD_REQUEST", () => {
    for (const path of [join(dir, "missing.yaml"), file("bad.yaml", "version: 2\n")]) {
      const r = cli(["--json", "nats-config", path]);
      assert.equal(r.code, 1, r.stderr);
      const last = r.stderr.trim().split("\n").at(-1)!;
      assert.equal((JSON.parse(last) as { error: { code: string } }).error.code, "BAD_REQUEST", r.stderr);
    }
  });

  test("a policy with no identities and no services: a note says the block has no service user", () => {
    const r = cli(["nats-config", file("open.yaml", 'version: 1\ndefaults:\n  allow: ["*"]\n')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^note: the policy names no identities and no services: the block has no service user/m);
    assert.match(r.stdout, /users: \[\s*\]/);
  });

  test("--json: the block, the connect settings and no seed", () => {
    const r = cli(["--json", "nats-config", file("json.yaml", policyYaml), "--discovery", "all"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { authorization: string; services: { name: string; key: string; inboxPrefix: string; generated: boolean; seed?: string }[]; notes: string[] };
    assert.deepEqual(out.services.map((s) => [s.name, s.inboxPrefix, s.generated, s.seed]), [
      ["auth", "_INBOX_auth", false, undefined],
      ["claims", "_INBOX_claims", false, undefined],
      ["payments", "_INBOX_payments", false, undefined],
    ]);
    assert.equal(out.services[1]!.key, ids.claims.publicKey);
    assert.ok(out.authorization.includes('"$SRV.INFO.*"'));
    assert.ok(out.authorization.includes('"$JS.API.CONSUMER.CREATE.KV_svcmesh_policies"'), "the library's policy bucket by default");
    const other = JSON.parse(cli(["--json", "nats-config", file("json.yaml", policyYaml), "--policy-bucket", "team_policies"]).stdout) as { authorization: string; notes: string[] };
    assert.ok(other.authorization.includes('"$JS.API.CONSUMER.CREATE.KV_team_policies"') && !other.authorization.includes('"$JS.API.CONSUMER.CREATE.KV_svcmesh_policies"'));
    // svcmesh services watch the library's bucket only: the config says what that means for them.
    assert.ok(other.notes.some((n) => /svcmesh services read the policy from svcmesh_policies only/.test(n)), JSON.stringify(other.notes));
    assert.ok(!out.notes.some((n) => /--policy-bucket/.test(n)), "no such note for the library's own bucket");
    const none = JSON.parse(cli(["--json", "nats-config", file("json.yaml", policyYaml), "--no-policy-bucket"]).stdout) as { authorization: string };
    assert.ok(!none.authorization.includes("KV_"), "--no-policy-bucket grants none");
  });

  test("--out-dir --generate-keys: authorization.conf, 0600 env files, seeds only for generated keys, and they work", async () => {
    // payments has no identity here: its key pair is generated.
    const noPayments = policyYaml.replace(/^ {2}payments: \{ key: .*\n/m, "");
    const out = join(dir, "deploy");
    const r = cli(["nats-config", file("gen.yaml", noPayments), "--out-dir", out, "--generate-keys"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!/SU[A-Z2-7]{56}/.test(r.stdout + r.stderr), "a seed written to a file is not printed");
    assert.match(r.stdout, /payments: \{ key: U[A-Z2-7]{55} \}/);
    const env = (name: string) => Object.fromEntries(readFileSync(join(out, `${name}.env`), "utf8").split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split("=", 2) as [string, string]));
    for (const name of ["auth", "claims", "payments"]) {
      assert.equal(statSync(join(out, `${name}.env`)).mode & 0o777, 0o600, name);
      assert.equal(env(name).SVCMESH_NAME, name);
      assert.equal(env(name).NATS_INBOX_PREFIX, `_INBOX_${name}`);
    }
    assert.equal(env("claims").SVCMESH_SEED, undefined, "never a seed it did not generate");
    assert.equal(env("claims").SVCMESH_PUBLIC_KEY, ids.claims.publicKey);
    const seed = env("payments").SVCMESH_SEED;
    assert.match(String(seed), /^SU[A-Z2-7]{56}$/);
    const config = readFileSync(join(out, "authorization.conf"), "utf8");
    assert.ok(config.includes(`nkey: "${env("payments").SVCMESH_PUBLIC_KEY}"`));
    await exercise(config, { claims: ids.claims.seed, payments: seed! });
  });

  test("a service with no identity and no --generate-keys: exit 1, saying so", () => {
    const r = cli(["nats-config", file("nokey.yaml", policyYaml.replace(/^ {2}auth: \{ key: .*\n/m, ""))]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /nokey\.yaml: services\.auth: no identity/);
    assert.match(r.stderr, /--generate-keys/);
  });

  test("an invalid policy: file:line:col errors, exit 1, nothing generated", () => {
    const p = file("bad.yaml", policyYaml.replace("reimburse: { allow: [claims] }", "reimburse: { alow: [claims] }").replace("allow: [claims]\n", "allow: [clams]\n"));
    const r = cli(["nats-config", p]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trim().split("\n");
    assert.ok(lines.some((l) => l.startsWith(`${p}:12:`) && l.includes("alow")), r.stderr);
    assert.ok(lines.some((l) => new RegExp(`^${p.replace(/[.]/g, "\\.")}:\\d+:\\d+: .*clams`).test(l)), r.stderr);
    assert.match(lines.at(-1)!, /^svcmesh: .*bad\.yaml: invalid policy \(2 errors\); nothing generated$/);
    assert.equal(cli(["nats-config", join(dir, "missing.yaml")]).code, 1);
  });

  test("bad command lines: exit 2", () => {
    const p = file("ok.yaml", policyYaml);
    assert.equal(cli(["nats-config", p, "--operator", "ops"]).code, 2);
    for (const arg of [`ops=${ids.ops.seed}`, ids.ops.seed, `ops=${ids.ops.publicKey}x`]) {
      const r = cli(["nats-config", p, "--operator", arg]);
      assert.equal(r.code, 2, arg);
      assert.ok(!r.stderr.includes(ids.ops.seed), "a seed given by mistake is not echoed");
    }
    assert.match(cli(["nats-config", p, "--operator", `ops=${ids.ops.seed}`]).stderr, /that is an nkey seed/);
    assert.equal(cli(["nats-config", p, "--operator", `ops=${ids.ops.publicKey}`, "--operator", `ops=${ids.auth.publicKey}`]).code, 2);
    assert.equal(cli(["nats-config", p, "--discovery", "some"]).code, 2);
    assert.equal(cli(["nats-config"]).code, 2);
  });
});
