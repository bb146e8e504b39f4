// nkey identities: generation, seeds, and that our native ed25519 keys are the very
// keys nkeys.js (and so nats-server) derives from the same seed. No network.
import assert from "node:assert/strict";
import { sign, verify } from "node:crypto";
import { describe, test } from "node:test";
import { fromPublic, fromSeed } from "nkeys.js";
import { identityFromSeed, isUserPublicKey, newIdentity, publicKeyObject } from "../src/identity/keys.ts";

const enc = new TextEncoder();

function badRequest(message: RegExp) {
  return (e: unknown) => {
    const err = e as { code?: string; message?: string };
    assert.equal(err.code, "BAD_REQUEST");
    assert.match(err.message ?? "", message);
    return true;
  };
}

describe("newIdentity", () => {
  test("a user seed SU... and its public key U..., each unique", () => {
    const a = newIdentity();
    const b = newIdentity();
    assert.match(a.seed, /^SU[A-Z2-7]{56}$/);
    assert.match(a.publicKey, /^U[A-Z2-7]{55}$/);
    assert.notEqual(a.seed, b.seed);
    assert.notEqual(a.publicKey, b.publicKey);
    assert.equal(fromSeed(enc.encode(a.seed)).getPublicKey(), a.publicKey);
    assert.ok(isUserPublicKey(a.publicKey));
  });
});

describe("identityFromSeed", () => {
  test("gives the public key and a native key that signs like nkeys.js", () => {
    const id = newIdentity();
    const s = identityFromSeed(`  ${id.seed}\n`);
    assert.equal(s.seed, id.seed);
    assert.equal(s.publicKey, id.publicKey);
    const data = Buffer.from("hello mesh");
    // ed25519 is deterministic: native and nkeys.js signatures are byte for byte equal.
    const native = sign(null, data, s.privateKey);
    const kp = fromSeed(enc.encode(id.seed));
    assert.deepEqual(new Uint8Array(native), kp.sign(data));
    assert.ok(fromPublic(id.publicKey).verify(data, native));
    assert.ok(verify(null, data, publicKeyObject(id.publicKey), kp.sign(data)));
  });

  test("bad seeds are BAD_REQUEST with the reason, never echoing the seed", () => {
    const id = newIdentity();
    assert.throws(() => identityFromSeed(""), badRequest(/invalid identity seed: no seed given/));
    assert.throws(() => identityFromSeed(undefined as unknown as string), badRequest(/no seed given/));
    assert.throws(() => identityFromSeed(id.publicKey), badRequest(/public key \(U\.\.\.\), not a seed/));
    assert.throws(() => identityFromSeed("hello"), badRequest(/starts with "S"/));
    assert.throws(() => identityFromSeed(id.seed.slice(0, 40)), badRequest(/58 characters, this one has 40/));
    const account = "SA" + id.seed.slice(2);
    assert.throws(() => identityFromSeed(account), badRequest(/another kind \("SA\.\.\."\), not a user seed/));
    // One character changed: the checksum catches it.
    const i = 20;
    const typo = id.seed.slice(0, i) + (id.seed[i] === "A" ? "B" : "A") + id.seed.slice(i + 1);
    assert.throws(() => identityFromSeed(typo), (e: unknown) => {
      badRequest(/invalid identity seed: .*(checksum|seed)/)(e);
      assert.ok(!(e as Error).message.includes(typo));
      return true;
    });
  });
});

describe("publicKeyObject", () => {
  test("refuses anything but a user public key, naming where it came from", () => {
    const id = newIdentity();
    assert.throws(() => publicKeyObject(id.seed, 'identity "claims"'), badRequest(/^identity "claims": "SU.*…" is not an nkey user public key/));
    assert.throws(() => publicKeyObject("A" + id.publicKey.slice(1)), badRequest(/not an nkey user public key/));
    const typo = id.publicKey.slice(0, 30) + (id.publicKey[30] === "A" ? "B" : "A") + id.publicKey.slice(31);
    assert.equal(isUserPublicKey(typo), false);
    assert.throws(() => publicKeyObject(typo), badRequest(/not an nkey user public key/));
  });
});
