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
