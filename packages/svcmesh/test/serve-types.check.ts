// Compile-time checks, run by `tsc -p test` (part of `pnpm test`): handlers are typed
// by their endpoint's schemas. Each @ts-expect-error fails the build if typing regresses.
import type { Mesh } from "svcmesh";
import { z } from "zod";

export async function typedEndpoints(mesh: Mesh): Promise<void> {
  await mesh.serve({
    name: "typed",
    version: "1.0.0",
    endpoints: {
      reimburse: {
        input: z.object({ claimId: z.string(), usd: z.number() }),
        output: z.object({ txn: z.string() }),
        handler: async (req, ctx) => ({ txn: `${req.claimId}:${req.usd}:${ctx.caller}` }),
      },
      misread: {
        input: z.object({ claimId: z.string() }),
        // @ts-expect-error the input has no field `nope`
        handler: (req) => req.nope,
      },
      wrongOutput: {
        output: z.object({ txn: z.string() }),
        // @ts-expect-error the output schema wants txn to be a string
        handler: () => ({ txn: 1 }),
      },
      untyped: { handler: (req) => req },
    },
  });
}
