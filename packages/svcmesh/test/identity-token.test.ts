// Mesh-Token signing and verification with explicit clock readings (ms). No network.
import assert from "node:assert/strict";
import { sign } from "node:crypto";
import { describe, test } from "node:test";
import { identityFromSeed, newIdentity } from "../src/identity/keys.ts";
import { createSigner, createVerifier, readTokenClaims, TOKEN_HEADER } from "../src/identity/token.ts";

const T0 = 1_800_000_000_000;
const claims = newIdentity();
const auth = newIdentity();
const stranger = newIdentity();
const keys = new Map([
  ["claims", claims.publicKey],
  ["auth", auth.publicKey],
]);

function verifierFor(service = "payments", extra: { maxCacheEntries?: number; clockSkewMs?: number } = {}) {
  return createVerifier({ keys, service, clockSkewMs: extra.clockSkewMs ?? 5_000, ...extra });
}

function unauthenticated(message: RegExp) {
  return (e: unknown) => {
    const err = e as { code?: string; message?: string };
    assert.equal(err.code, "UNAUTHENTICATED", String(err.message));
    assert.match(err.message ?? "", message);
    return true;
  };
}

/** A token with the claims part rewritten and the original signature kept. */
function withField(token: string, index: number, value: string): string {
  const parts = token.split(".");
  parts[index] = value;
  return parts.join(".");
}

/** Signs arbitrary claims text the way a signer does, with `seed`. */
function signClaims(seed: string, claimsText: string): string {
  const sig = sign(null, Buffer.from("svcmesh-token\n" + claimsText, "latin1"), identityFromSeed(seed).privateKey);
  return `${claimsText}.${sig.toString("base64url")}`;
}

describe("sign and verify", () => {
  test("a token verifies as its caller at the target it names", () => {
    const token = createSigner("claims", claims.seed).tokenFor("payments", T0);
    assert.equal(TOKEN_HEADER, "Mesh-Token");
    assert.match(token, /^v1\.claims\.payments\.1800000000000\.1800000060000\.U[A-Z2-7]{11}\.[A-Za-z0-9_-]{86}$/);
    assert.ok(token.length < 160, `token is ${token.length} characters`);
    assert.deepEqual(readTokenClaims(token), {
      caller: "claims", target: "payments", issuedAt: T0, expiresAt: T0 + 60_000, keyHint: claims.publicKey.slice(0, 12),
    });
    const v = verifierFor();
    assert.equal(v.verify(token, T0).caller, "claims");
    assert.equal(v.verify(token, T0 + 60_000 + 5_000).caller, "claims"); // expiry plus allowed skew
    assert.equal(v.verify(token, T0 - 5_000).caller, "claims"); // callee clock behind by the skew
  });

  test("lifetime is configurable", () => {
    const token = createSigner("claims", claims.seed, { lifetimeMs: 5_000 }).tokenFor("payments", T0);
    assert.equal(readTokenClaims(token)?.expiresAt, T0 + 5_000);
  });

  test("bad signer settings are BAD_REQUEST", () => {
    assert.throws(() => createSigner("Claims!", claims.seed), { code: "BAD_REQUEST" });
    assert.throws(() => createSigner("claims", "nope"), { code: "BAD_REQUEST" });
    assert.throws(() => createSigner("claims", claims.seed, { lifetimeMs: 0 }), { code: "BAD_REQUEST" });
    assert.throws(() => createSigner("claims", claims.seed, { lifetimeMs: 1000, refreshMarginMs: 1000 }), { code: "BAD_REQUEST" });
    assert.throws(() => createSigner("claims", claims.seed).tokenFor("pay.ments", T0), { code: "BAD_REQUEST" });
  });

  test("bad verifier settings are BAD_REQUEST", () => {
    assert.throws(() => createVerifier({ keys: new Map([["claims", claims.seed]]), service: "payments" }), {
      code: "BAD_REQUEST", message: /identity "claims": .* is not an nkey user public key/,
    });
    assert.throws(() => createVerifier({ keys, service: "no.dots" }), { code: "BAD_REQUEST" });
  });
});

describe("refusals: UNAUTHENTICATED with the reason", () => {
  const token = createSigner("claims", claims.seed).tokenFor("payments", T0);

  test("missing token", () => {
    const v = verifierFor();
    assert.throws(() => v.verify(undefined, T0), unauthenticated(/^missing Mesh-Token header/));
    assert.throws(() => v.verify("", T0), unauthenticated(/^missing Mesh-Token header/));
  });

  test("malformed tokens", () => {
    const v = verifierFor();
    for (const [bad, why] of [
      ["garbage", /expected 7 dot-separated fields.*got 1/],
      [token + ".x", /got 8/],
      [withField(token, 0, "v2"), /unknown token version "v2"/],
      [withField(token, 1, "Claims"), /caller "Claims" is not a service name/],
      [withField(token, 2, ""), /target "" is not a service name/],
      [withField(token, 3, "-5"), /epoch milliseconds/],
      [withField(token, 4, "1e20"), /epoch milliseconds/],
      [withField(token, 5, "xyz"), /key hint/],
      [withField(token, 6, token.split(".")[6]!.slice(1)), /86 base64url characters/],
      [withField(token, 6, "!".repeat(86)), /86 base64url characters/],
      ["v1." + "a".repeat(600), /more than a token ever has/],
    ] as const) {
      assert.throws(() => v.verify(bad, T0), unauthenticated(new RegExp("^malformed Mesh-Token: .*" + why.source)), bad);
    }
  });

  test("forged: any claim changed under the original signature", () => {
    const v = verifierFor();
    const other = createSigner("claims", claims.seed).tokenFor("payments", T0 + 1); // valid, different signature
    for (const forged of [
      withField(token, 2, "ledger"),
      withField(token, 3, String(T0 - 1)),
      withField(token, 4, String(T0 + 120_000)),
      withField(token, 6, other.split(".")[6]!),
      // one signature character flipped (not the last, whose low bits base64url ignores)
      withField(token, 6, ((s) => s.slice(0, 10) + (s[10] === "A" ? "B" : "A") + s.slice(11))(token.split(".")[6]!)),
    ]) {
      assert.throws(() => v.verify(forged, T0), unauthenticated(/^forged signature: the token of "claims" does not verify with its registered key U/), forged);
    }
    // claiming to be "auth" (with auth's key hint) under claims' signature
    const asAuth = withField(withField(token, 1, "auth"), 5, auth.publicKey.slice(0, 12));
    assert.throws(() => v.verify(asAuth, T0), unauthenticated(/^forged signature: the token of "auth"/));
  });

  test("signed with another identity's key", () => {
    const v = verifierFor();
    // a stranger's seed, claiming to be claims: its key hint gives it away
    const impostor = createSigner("claims", stranger.seed).tokenFor("payments", T0);
    assert.throws(() => v.verify(impostor, T0), unauthenticated(
      new RegExp(`^key mismatch: the token of "claims" is signed with key ${stranger.publicKey.slice(0, 12)}…, but "claims" is registered with key ${claims.publicKey.slice(0, 12)}…`),
    ));
    // ... and with the hint faked to claims' key, the signature fails
    const faked = signClaims(stranger.seed, `v1.claims.payments.${T0}.${T0 + 60_000}.${claims.publicKey.slice(0, 12)}`);
    assert.throws(() => v.verify(faked, T0), unauthenticated(/^forged signature/));
    // auth's real key, claiming to be claims
    const authAsClaims = createSigner("claims", auth.seed).tokenFor("payments", T0);
    assert.throws(() => v.verify(authAsClaims, T0), unauthenticated(/^key mismatch/));
  });

  test("expired, also when replayed after expiry", () => {
    const v = verifierFor();
    assert.equal(v.verify(token, T0 + 30_000).caller, "claims"); // now cached
    assert.throws(() => v.verify(token, T0 + 65_001), unauthenticated(/^expired token: the token of "claims" expired 5001 ms ago \(clock skew allowed: 5000 ms\)/));
    assert.throws(() => v.verify(token, T0 + 3_600_000), unauthenticated(/^expired token/));
    assert.equal(v.cacheSize, 0);
  });

  test("future-dated beyond the skew", () => {
    const v = verifierFor();
    const future = createSigner("claims", claims.seed).tokenFor("payments", T0 + 5_001);
    assert.throws(() => v.verify(future, T0), unauthenticated(/^token not yet valid: the token of "claims" is issued 5001 ms in the future/));
    assert.equal(v.verify(future, T0 + 1).caller, "claims");
  });

  test("a lifetime beyond the verifier's maximum", () => {
    const v = createVerifier({ keys, service: "payments", maxLifetimeMs: 60_000 });
    const long = createSigner("claims", claims.seed, { lifetimeMs: 60_001 }).tokenFor("payments", T0);
    assert.throws(() => v.verify(long, T0), unauthenticated(/^malformed Mesh-Token: lifetime 60001 ms .* not within \(0, 60000\] ms/));
  });

  test("wrong target: a callee cannot replay a token elsewhere", () => {
    const v = verifierFor();
    const ledger = verifierFor("ledger");
    assert.equal(v.verify(token, T0).caller, "claims");
    assert.throws(() => ledger.verify(token, T0), unauthenticated(/^wrong target: the token of "claims" is for service "payments", not "ledger"/));
  });

  test("caller not registered", () => {
    const v = verifierFor();
    const t = createSigner("reports", stranger.seed).tokenFor("payments", T0);
    assert.throws(() => v.verify(t, T0), unauthenticated(/^caller "reports" is not a registered identity/));
  });
});

describe("caches", () => {
  test("tokenFor: the same token until within the margin of expiry, then a new one", () => {
    const s = createSigner("claims", claims.seed, { lifetimeMs: 60_000, refreshMarginMs: 15_000 });
    const a = s.tokenFor("payments", T0);
    assert.equal(s.tokenFor("payments", T0 + 1), a);
    assert.equal(s.tokenFor("payments", T0 + 44_999), a);
    const b = s.tokenFor("payments", T0 + 45_000);
    assert.notEqual(b, a);
    assert.equal(readTokenClaims(b)?.issuedAt, T0 + 45_000);
    assert.equal(s.tokenFor("payments", T0 + 60_000), b);
    // per target
    const c = s.tokenFor("ledger", T0 + 45_000);
    assert.equal(readTokenClaims(c)?.target, "ledger");
    assert.equal(s.tokenFor("payments", T0 + 45_001), b);
    // a clock that went back before the issue time gets a fresh token
    const d = s.tokenFor("payments", T0 + 44_000);
    assert.equal(readTokenClaims(d)?.issuedAt, T0 + 44_000);
  });

  test("verify: a seen token is remembered until it expires", () => {
    const v = verifierFor();
    const t = createSigner("claims", claims.seed).tokenFor("payments", T0);
    const first = v.verify(t, T0);
    assert.equal(v.cacheSize, 1);
    assert.equal(v.verify(t, T0 + 1_000), first); // the very same object: a lookup
    assert.equal(first.validUntil, T0 + 65_000);
  });

  test("updateKeys: a rotated or removed key invalidates cached verifications", () => {
    const v = verifierFor();
    const t = createSigner("claims", claims.seed).tokenFor("payments", T0);
    v.verify(t, T0);
    v.updateKeys(new Map(keys)); // the same keys: the cache stays
    assert.equal(v.cacheSize, 1);
    const rotated = newIdentity();
    v.updateKeys(new Map([["claims", rotated.publicKey]]));
    assert.equal(v.cacheSize, 0);
    assert.throws(() => v.verify(t, T0), unauthenticated(/^key mismatch/));
    const fresh = createSigner("claims", rotated.seed).tokenFor("payments", T0);
    assert.equal(v.verify(fresh, T0).caller, "claims");
    v.updateKeys(new Map());
    assert.throws(() => v.verify(fresh, T0), unauthenticated(/^caller "claims" is not a registered identity/));
    // an invalid key set is refused whole; the old one stays
    assert.throws(() => v.updateKeys(new Map([["claims", "nope"]])), { code: "BAD_REQUEST" });
    assert.throws(() => v.verify(fresh, T0), unauthenticated(/not a registered identity/));
  });

  test("many tokens from several callers: each verifies as its own caller, cached or not", () => {
    const v = verifierFor("payments", { maxCacheEntries: 50 });
    const tokens = Array.from({ length: 600 }, (_, i) =>
      [i % 2 === 0 ? "claims" : "auth", createSigner(i % 2 === 0 ? "claims" : "auth", i % 2 === 0 ? claims.seed : auth.seed).tokenFor("payments", T0 + i)] as const);
    for (let round = 0; round < 3; round++) {
      for (const [caller, t] of tokens) assert.equal(v.verify(Buffer.from(t).toString("latin1"), T0 + 1_000).caller, caller);
    }
    v.updateKeys(new Map([["claims", claims.publicKey]]));
    for (const [caller, t] of tokens) {
      if (caller === "auth") assert.throws(() => v.verify(t, T0 + 1_000), unauthenticated(/"auth" is not a registered identity/));
      else assert.equal(v.verify(t, T0 + 1_000).caller, "claims");
    }
  });

  test("bounded: expired entries are swept, then the oldest dropped", () => {
    const v = verifierFor("payments", { maxCacheEntries: 3 });
    const s = createSigner("claims", claims.seed, { lifetimeMs: 1_000, refreshMarginMs: 0 });
    const tokens = [0, 1, 2].map((i) => s.tokenFor("payments", T0 + i * 1_000));
    tokens.forEach((t, i) => v.verify(t, T0 + i * 1_000));
    assert.equal(v.cacheSize, 3);
    // tokens 0 and 1 have expired by now (valid until +1 s +5 s skew)
    const late = s.tokenFor("payments", T0 + 7_500);
    v.verify(late, T0 + 7_500);
    assert.equal(v.cacheSize, 2);
    // all live: the oldest goes
    const live = [8_000, 8_001, 8_002].map((d) => createSigner("claims", claims.seed).tokenFor("payments", T0 + d));
    for (const t of live) v.verify(t, T0 + 8_100);
    assert.equal(v.cacheSize, 3);
    assert.throws(() => v.verify(late, T0 + 9_000 + 5_001 - 500), unauthenticated(/^expired/)); // the dropped one is checked afresh
    const signer = createSigner("claims", claims.seed);
    for (let i = 0; i < 200; i++) assert.equal(v.verify(signer.tokenFor("payments", T0 + 9_000 + i * 60_000), T0 + 9_500 + i * 60_000).caller, "claims");
    assert.ok(v.cacheSize <= 3);
  });
});
