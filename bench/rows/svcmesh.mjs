// Row "svcmesh": the core, as users write it: mesh.serve with zod input and output
// schemas, and a bound client. Retries and the breaker (on by default) are switched
// off here; the "resilience" row measures them. So are tracing and the audit trail
// (the "tracing" rows measure tracing; the bench server has no JetStream to audit to).
import { connect } from "svcmesh";
import { TIMEOUT_MS, claim, claimSchema, decide, decisionSchema } from "../contract.mjs";

export async function serve(url) {
  const mesh = await connect({ servers: url, name: "payments", trace: false, audit: { enabled: false } });
  await mesh.serve({
    name: "payments",
    version: "2.1.0",
    endpoints: {
      reimburse: { input: claimSchema, output: decisionSchema, handler: async (c) => decide(c) },
    },
  });
  return { close: () => mesh.close() };
}

export async function caller(url) {
  const mesh = await connect({ servers: url, name: "claims", trace: false, audit: { enabled: false }, defaults: { retry: { attempts: 1 }, breaker: { enabled: false } } });
  const payments = mesh.client("payments@^2");
  const opts = { timeoutMs: TIMEOUT_MS };
  return {
    call: () => payments.call("reimburse", claim, opts),
    close: () => mesh.close(),
  };
}
