// Rows "tracing1" and "tracing100": the core row with tracing on and an OpenTelemetry
// SDK registered in both processes: spans sampled (parent-based) and svc.trace records
// published at 1% and at 100%. Compare with the "svcmesh" row (tracing off). With
// args { sdk: false } ("tracing1nosdk"), no SDK: what the mesh's own tracing costs.
import { connect } from "svcmesh";
import { TIMEOUT_MS, claim, claimSchema, decide, decisionSchema } from "../contract.mjs";
import { registerTracing } from "../otel.mjs";

function sdkFor(rate, args) {
  return args?.sdk === false ? () => Promise.resolve() : registerTracing(rate);
}

export function tracingRow(rate) {
  return {
    async serve(url, args) {
      const shutdown = sdkFor(rate, args);
      const mesh = await connect({ servers: url, name: "payments", trace: { sampleRate: rate }, audit: { enabled: false } });
      await mesh.serve({
        name: "payments",
        version: "2.1.0",
        endpoints: { reimburse: { input: claimSchema, output: decisionSchema, handler: async (c) => decide(c) } },
      });
      return { close: async () => { await mesh.close(); await shutdown(); } };
    },
    async caller(url, args) {
      const shutdown = sdkFor(rate, args);
      const mesh = await connect({ servers: url, name: "claims", trace: { sampleRate: rate }, audit: { enabled: false }, defaults: { retry: { attempts: 1 }, breaker: { enabled: false } } });
      const payments = mesh.client("payments@^2");
      const opts = { timeoutMs: TIMEOUT_MS };
      return {
        call: () => payments.call("reimburse", claim, opts),
        close: async () => { await mesh.close(); await shutdown(); },
      };
    },
  };
}
