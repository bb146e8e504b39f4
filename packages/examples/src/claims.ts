// The claims desk (1.x): takes a lost-package claim, has auth verify the claimant,
// then has payments reimburse it. Both are nested calls through ctx.mesh, so they
// share what is left of the submitter's deadline.
import { MeshError, type Mesh, type ServiceHandle } from "svcmesh";
import { z } from "zod";
import { AUTH_TARGET, type VerifyRequest, type VerifyResult } from "./auth.js";
import { PAYMENTS_TARGET, type ReimburseRequest, type Reimbursement } from "./payments.js";

export const CLAIMS_VERSION = "1.0.0";
/** How clients address it: any 1.x. */
export const CLAIMS_TARGET = "claims@^1";

export const SubmitInput = z.object({
  claimId: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, "use 1-64 letters, digits or dashes"),
  claimantId: z.string().min(1).max(64),
  token: z.string().min(1).max(256),
  usd: z.number().positive().max(10_000),
  description: z.string().min(1).max(500),
});

export const SubmitOutput = z.object({
  claimId: z.string(),
  status: z.literal("paid"),
  claimant: z.string(),
  usd: z.number(),
  txn: z.string(),
  /** Which payments instance paid it. */
  payments: z.object({ instance: z.string(), host: z.string(), pid: z.number().int() }),
});

export type Claim = z.input<typeof SubmitInput>;
export type ClaimReceipt = z.output<typeof SubmitOutput>;

export function serveClaims(mesh: Mesh): Promise<ServiceHandle> {
  return mesh.serve({
    name: "claims",
    version: CLAIMS_VERSION,
    description: "lost-package claims desk",
    endpoints: {
      submit: {
        input: SubmitInput,
        output: SubmitOutput,
        description: "verifies the claimant, then reimburses the claim",
        handler: async (claim, ctx): Promise<ClaimReceipt> => {
          const who = await ctx.mesh.call<VerifyResult>(AUTH_TARGET, "verify", { claimantId: claim.claimantId, token: claim.token } satisfies VerifyRequest);
          if (!who.verified) {
            ctx.logger.warn({ claimId: claim.claimId, claimantId: claim.claimantId, reason: who.reason }, "claim refused");
            throw new MeshError("FORBIDDEN", `claim ${claim.claimId}: the identity of claimant ${JSON.stringify(claim.claimantId)} could not be verified`);
          }
          const paid = await ctx.mesh.call<Reimbursement>(PAYMENTS_TARGET, "reimburse", { claimId: claim.claimId, usd: claim.usd } satisfies ReimburseRequest);
          ctx.logger.info({ claimId: claim.claimId, txn: paid.txn, payments: paid.servedBy }, "claim paid");
          return {
            claimId: claim.claimId,
            status: "paid",
            claimant: who.name,
            usd: paid.usd,
            txn: paid.txn,
            payments: { instance: paid.servedBy, host: paid.host, pid: paid.pid },
          };
        },
      },
    },
  });
}
