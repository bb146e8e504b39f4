// Deterministic nkey identities for the bench (policy-document.mjs, rows "policy", policy-instance.mjs).
// The row processes get only the server URL, so each derives the same key pair from
// its name: seed = nkey user seed over sha256("svcmesh-bench/" + name). These keys
// guard nothing (a private nats-server on loopback, for one run); never do this for a
// real identity, whose seed must come from `svcmesh identity new`.
import { createHash } from "node:crypto";
import { identityFromSeed } from "svcmesh";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SEED_PREFIX = 18 << 3; // nkeys: "S"
const USER_PREFIX = 20 << 3; // nkeys: "U"

function crc16(bytes) {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function base32(bytes) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The nkey user seed ("SU...") of the bench identity `name`. */
export function benchSeed(name) {
  const raw = createHash("sha256").update(`svcmesh-bench/${name}`).digest();
  const body = Buffer.concat([Buffer.from([SEED_PREFIX | (USER_PREFIX >> 5), (USER_PREFIX & 31) << 3]), raw]);
  const sum = crc16(body);
  return base32(Buffer.concat([body, Buffer.from([sum & 0xff, sum >> 8])]));
}

/** { seed, publicKey } of the bench identity `name` (checked by svcmesh's own parser). */
export function benchIdentity(name) {
  const { seed, publicKey } = identityFromSeed(benchSeed(name));
  return { seed, publicKey };
}

