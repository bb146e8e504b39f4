// The auth service (1.x): answers "is this really claimant X?" for the claims desk.
// A real deployment would ask an identity provider; the demo keeps a small table.
import { createHash, timingSafeEqual } from "node:crypto";
import type { Mesh, ServiceHandle } from "svcmesh";
import { z } from "zod";

export const AUTH_VERSION = "1.0.0";
/** How other services address it: any 1.x. */
export const AUTH_TARGET = "auth@^1";

export interface Claimant {
  name: string;
  token: string;
}

/** The claimants this auth service knows, by id. */
export const claimants: ReadonlyMap<string, Claimant> = new Map([
  ["alice", { name: "Alice Andersen", token: "tok-alice-7f3a" }],
  ["bob", { name: "Bob Okafor", token: "tok-bob-19c2" }],
  ["carol", { name: "Carol Nguyen", token: "tok-carol-a4e8" }],
  ["dmitri", { name: "Dmitri Volkov", token: "tok-dmitri-5b71" }],
]);

export const VerifyInput = z.object({
  claimantId: z.string().min(1).max(64),
  token: z.string().min(1).max(256),
});

/**
 * A failed check is an answer, not an error: the caller decides what it means for
 * its request (the claims desk refuses the claim with FORBIDDEN). The reason is for
 * the trusted caller's logs, not for the claimant.
 */
export const VerifyOutput = z.discriminatedUnion("verified", [
  z.object({ verified: z.literal(true), claimantId: z.string(), name: z.string() }),
  z.object({ verified: z.literal(false), claimantId: z.string(), reason: z.enum(["unknown claimant", "token mismatch"]) }),
]);

export type VerifyRequest = z.input<typeof VerifyInput>;
export type VerifyResult = z.output<typeof VerifyOutput>;

export function verify(req: z.output<typeof VerifyInput>): VerifyResult {
  const known = claimants.get(req.claimantId);
  if (!known) return { verified: false, claimantId: req.claimantId, reason: "unknown claimant" };
  if (!sameSecret(req.token, known.token)) return { verified: false, claimantId: req.claimantId, reason: "token mismatch" };
  return { verified: true, claimantId: req.claimantId, name: known.name };
}

/** Constant-time comparison (hashing first makes the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

export function serveAuth(mesh: Mesh): Promise<ServiceHandle> {
  return mesh.serve({
    name: "auth",
    version: AUTH_VERSION,
    description: "verifies claimants' identities",
    endpoints: {
      verify: {
        input: VerifyInput,
        output: VerifyOutput,
        description: "checks a claimant's id and token",
        handler: (req, ctx) => {
          const result = verify(req);
          if (!result.verified) ctx.logger.info({ claimantId: req.claimantId, reason: result.reason }, "identity check failed");
          return result;
        },
      },
    },
  });
}
