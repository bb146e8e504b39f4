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

// Literal outputs need `as const`: TypeScript widens literals while it infers the
// endpoint map (reverse mapped types), before the output schema can type the return.
export async function literalOutputs(mesh: Mesh): Promise<void> {
  await mesh.serve({
    name: "literal",
    version: "1.0.0",
    endpoints: {
      pay: {
        input: z.object({ claimId: z.string() }),
        output: z.object({ status: z.enum(["paid", "refused"]), txn: z.string() }),
        handler: async (req) => ({ status: "paid" as const, txn: req.claimId }),
      },
      widened: {
        output: z.object({ status: z.enum(["paid", "refused"]) }),
        // @ts-expect-error without `as const` the literal widens to string
        handler: async () => ({ status: "paid" }),
      },
    },
  });
}
