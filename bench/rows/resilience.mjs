// Row "resilience": the svcmesh row with every resilience feature on, at limits high
// enough never to trigger: callee per-caller rate limits and a bulkhead, an idempotent
// endpoint, and a caller with the breaker and retries (the defaults) and the
// rate-limit mirror of the callee's published limit.
import { connect } from "svcmesh";
import { TIMEOUT_MS, claim, claimSchema, decide, decisionSchema } from "../contract.mjs";

/** The service with every callee-side feature on; the "policy" row serves it too. */
export const resilientPayments = {
  name: "payments",
  version: "2.1.0",
  rateLimits: { claims: { rps: 10_000_000, burst: 10_000_000 }, "*": { rps: 1_000 } },
  endpoints: {
    reimburse: { input: claimSchema, output: decisionSchema, idempotent: true, maxConcurrent: 100_000, handler: async (c) => decide(c) },
  },
};

export async function serve(url) {
  const mesh = await connect({ servers: url, name: "payments", trace: false, audit: { enabled: false } });
  await mesh.serve(resilientPayments);
  return { close: () => mesh.close() };
}

export async function caller(url) {
  const mesh = await connect({ servers: url, name: "claims", trace: false, audit: { enabled: false } });
  const payments = mesh.client("payments@^2");
  const opts = { timeoutMs: TIMEOUT_MS };
  return {
    call: () => payments.call("reimburse", claim, opts),
    close: () => mesh.close(),
  };
}
