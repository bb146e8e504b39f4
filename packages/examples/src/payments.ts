// The payments service (2.x): pays out a reimbursement and says which instance did it.
import { hostname } from "node:os";
import type { Mesh, ServiceHandle } from "svcmesh";
import { z } from "zod";

export const PAYMENTS_VERSION = "2.1.0";
/** How other services address it: any 2.x. */
export const PAYMENTS_TARGET = "payments@^2";

export const ReimburseInput = z.object({
  claimId: z.string().min(1).max(64),
  usd: z.number().positive().max(10_000),
});

export const ReimburseOutput = z.object({
  /** Derived from the claim id, so paying the same claim twice names the same transaction. */
  txn: z.string(),
  claimId: z.string(),
  usd: z.number(),
  /** The serving instance's id (as $SRV discovery reports it). */
  servedBy: z.string(),
  host: z.string(),
  pid: z.number().int(),
});

export type ReimburseRequest = z.input<typeof ReimburseInput>;
export type Reimbursement = z.output<typeof ReimburseOutput>;

export function servePayments(mesh: Mesh): Promise<ServiceHandle> {
  const host = hostname();
  return mesh.serve({
    name: "payments",
    version: PAYMENTS_VERSION,
    description: "pays out approved claims",
    endpoints: {
      reimburse: {
        input: ReimburseInput,
        output: ReimburseOutput,
        description: "reimburses a claim in USD",
        handler: (req, ctx) => {
          const usd = Math.round(req.usd * 100) / 100;
          ctx.logger.info({ claimId: req.claimId, usd }, "reimbursed");
          return { txn: `T-${req.claimId}`, claimId: req.claimId, usd, servedBy: ctx.instance, host, pid: process.pid };
        },
      },
    },
  });
}
