// What every row agrees on: the one logical request (a ~210-byte msgpack claim), the
// reply, the zod schemas the svcmesh row validates them with, the codec and the call
// budget. Kept in one place so rows differ only in how the bytes travel.
import { Decoder, Encoder } from "@msgpack/msgpack";
import { z } from "zod";

/** Every row's per-call timeout (ms); long enough never to fire on a healthy run. */
export const TIMEOUT_MS = 2000;

export const claim = {
  claimId: "C-2026-0012345",
  policyId: "POL-NY-88412-07",
  member: "Jane Q. Public",
  provider: "Mercy General Hospital",
  procedure: "MRI brain w/o contrast",
  currency: "USD",
  usd: 1234.56,
  submittedAt: 1795478400000,
  notes: "prior auth PA-55120",
};

export const claimSchema = z.object({
  claimId: z.string(),
  policyId: z.string(),
  member: z.string(),
  provider: z.string(),
  procedure: z.string(),
  currency: z.string().length(3),
  usd: z.number().positive(),
  submittedAt: z.number().int(),
  notes: z.string(),
});

export const decisionSchema = z.object({
  claimId: z.string(),
  approved: z.boolean(),
  txn: z.string(),
  usd: z.number(),
});

/** The handler's work, shared by every row so the business logic costs the same. */
export function decide(c) {
  return { claimId: c.claimId, approved: true, txn: "T-" + c.claimId, usd: c.usd };
}

// One codec per process, as svcmesh does: msgpack's top-level encode() builds a new
// Encoder (and its buffer) on every call, which would tax the bare rows unfairly.
const encoder = new Encoder();
const decoder = new Decoder();
export const pack = (value) => encoder.encode(value);
export const unpack = (bytes) => decoder.decode(bytes);

export const claimBytes = pack(claim).length;

// The scale table's payload rows only (the main table keeps the claim): a request of
// `bytes` bytes of msgpack, a claim id, an amount and a string filling the rest. The
// handler and the reply are the same decide() and decision as everywhere.
export const sizedRequestSchema = z.object({ claimId: z.string(), usd: z.number().positive(), blob: z.string() });

/** { body, schema } of a row's request: the claim, or the sized request when `bytes` is given. */
export function requestOf(bytes) {
  if (bytes === undefined) return { body: claim, schema: claimSchema };
  const sized = (n) => ({ claimId: claim.claimId, usd: claim.usd, blob: "x".repeat(Math.max(0, n)) });
  // The string's own length prefix grows with it (1, 2, 3 or 5 bytes): measure once, then correct.
  const empty = pack(sized(0)).length;
  const body = sized(bytes - empty - (pack(sized(bytes - empty)).length - bytes));
  if (pack(body).length !== bytes) throw new Error(`no request of exactly ${bytes} bytes (smallest is ${empty})`);
  return { body, schema: sizedRequestSchema };
}
