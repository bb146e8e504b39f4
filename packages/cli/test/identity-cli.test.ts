// `svcmesh identity new`: the built CLI as a child process. No NATS server needed.
// Run `pnpm build` first.
import assert from "node:assert/strict";
import { sign, verify } from "node:crypto";
import { describe, test } from "node:test";
import { createSigner, createVerifier, identityFromSeed, publicKeyObject } from "svcmesh";
import { runCliOffline } from "./run-cli.ts";


const cli = runCliOffline;

describe("svcmesh identity new", () => {
  test("--json: a valid nkey pair that signs and verifies", () => {
    const r = cli(["identity", "new", "claims", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const out = JSON.parse(r.stdout) as { name: string; seed: string; publicKey: string; policy: string };
    assert.equal(out.name, "claims");
    assert.match(out.seed, /^SU[A-Z2-7]{56}$/);
    assert.match(out.publicKey, /^U[A-Z2-7]{55}$/);
    assert.equal(out.policy, `claims: { key: ${out.publicKey} }`);
    // the seed is the private half of the printed public key
    const id = identityFromSeed(out.seed);
    assert.equal(id.publicKey, out.publicKey);
    const data = Buffer.from("svcmesh identity test");
    assert.ok(verify(null, data, publicKeyObject(out.publicKey), sign(null, data, id.privateKey)));
    // and a mesh token made with it verifies against the printed key
    const token = createSigner("claims", out.seed).tokenFor("payments");
    const verifier = createVerifier({ keys: new Map([["claims", out.publicKey]]), service: "payments" });
    assert.equal(verifier.verify(token).caller, "claims");
    // a second run gives another identity
    const again = JSON.parse(cli(["identity", "new", "claims", "--json"]).stdout) as { seed: string };
    assert.notEqual(again.seed, out.seed);
  });

  test("text: seed marked secret, public key, and the YAML for the policy", () => {
    const r = cli(["identity", "new", "payments"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /seed \(SECRET[^\n]*\n {2}SU[A-Z2-7]{56}\n/);
    const key = /public key:\n {2}(U[A-Z2-7]{55})\n/.exec(r.stdout)?.[1];
    assert.ok(key, r.stdout);
    assert.ok(r.stdout.includes(`identities:\n  payments: { key: ${key} }\n`), r.stdout);
  });

  test("a name that is not a service name is a usage error", () => {
    const r = cli(["identity", "new", "Payments!"]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^svcmesh: invalid identity name "Payments!"/);
    assert.equal(cli(["identity", "new"]).code, 2);
  });
});
