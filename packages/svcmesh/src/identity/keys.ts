// Service identities: nkey user key pairs (ed25519), as NATS itself uses them.
// nkeys.js makes and checks the text forms (seed "SU...", public key "U..."); the
// signing and verifying on the call path use Node's native ed25519 (node:crypto),
// some 20× faster than nkeys.js's pure-JS tweetnacl, from the same 32-byte keys.
import { type KeyObject, createPrivateKey, createPublicKey } from "node:crypto";
import { createUser, fromPublic, fromSeed } from "nkeys.js";
import { MeshError } from "../errors.js";

export interface Identity {
  /** The secret: an nkey user seed, "SU..." (58 characters). Whoever holds it can act as this identity. */
  readonly seed: string;
  /** The public nkey, "U..." (56 characters): what the operator registers in the policy. */
  readonly publicKey: string;
}

/** An identity ready to sign: its text forms plus the native private key. */
export interface SigningIdentity extends Identity {
  readonly privateKey: KeyObject;
}

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

// DER wrappers that turn a raw 32-byte ed25519 seed / public key into what node:crypto
// imports (RFC 8410: PKCS#8 and SubjectPublicKeyInfo for id-Ed25519, OID 1.3.101.112).
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 without padding, as nkeys writes it; the text is already checked by nkeys.js. */
function base32Decode(text: string): Uint8Array {
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let bits = 0;
  let value = 0;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const v = BASE32.indexOf(text[i]!);
    if (v < 0) throw new Error("not base32");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out[n++] = (value >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  return out;
}

/** A new random identity (nkey user). */
export function newIdentity(): Identity {
  const kp = createUser();
  const seed = textDecoder.decode(kp.getSeed());
  const publicKey = kp.getPublicKey();
  kp.clear();
  return { seed, publicKey };
}

/** Why `seed` is not a user seed, or "" if it is one. */
function seedProblem(seed: unknown): string {
  if (typeof seed !== "string" || seed.length === 0) return "no seed given";
  const trimmed = seed.trim();
  if (trimmed.startsWith("U") && trimmed.length === 56) return "this is a public key (U...), not a seed (SU...)";
  if (!trimmed.startsWith("S")) return "an nkey seed starts with \"S\" (a user seed with \"SU\")";
  if (trimmed.length !== 58) return `an nkey seed has 58 characters, this one has ${trimmed.length}`;
  if (trimmed[1] !== "U") return `this is an nkey seed of another kind ("S${trimmed[1]}..."), not a user seed ("SU...")`;
  return "";
}

/**
 * The identity a seed stands for. Throws BAD_REQUEST, naming what is wrong (never the
 * seed itself), when it is not a valid nkey user seed.
 */
export function identityFromSeed(seed: string): SigningIdentity {
  const problem = seedProblem(seed);
  if (problem) throw new MeshError("BAD_REQUEST", `invalid identity seed: ${problem}`);
  const text = seed.trim();
  let publicKey: string;
  try {
    const kp = fromSeed(textEncoder.encode(text));
    publicKey = kp.getPublicKey();
    kp.clear();
  } catch (e) {
    const reason = e instanceof Error ? e.message.replace(/^nkeys: /, "") : String(e);
    throw new MeshError("BAD_REQUEST", `invalid identity seed: ${reason} (a character is wrong or missing?)`);
  }
  // Checked by nkeys.js above: 2 prefix bytes, 32 raw seed bytes, 2 CRC bytes.
  const raw = base32Decode(text).subarray(2, 34);
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw]), format: "der", type: "pkcs8" });
  return { seed: text, publicKey, privateKey };
}

/** Whether `key` is a valid nkey user public key ("U...", checksum included). */
export function isUserPublicKey(key: string): boolean {
  if (typeof key !== "string" || key.length !== 56 || key[0] !== "U") return false;
  try {
    fromPublic(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * The native verifying key of a user public key. Throws BAD_REQUEST when `key` is not
 * one; `label` names where it came from in the message (e.g. `identity "claims"`).
 */
export function publicKeyObject(key: string, label = "public key"): KeyObject {
  if (!isUserPublicKey(key)) {
    const shown = typeof key === "string" ? JSON.stringify(key.length > 12 ? key.slice(0, 12) + "…" : key) : String(typeof key);
    throw new MeshError("BAD_REQUEST", `${label}: ${shown} is not an nkey user public key ("U..." 56 characters, valid checksum)`);
  }
  const raw = base32Decode(key).subarray(1, 33);
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: "der", type: "spki" });
}
