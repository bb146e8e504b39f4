// Rows "tracing1" and "tracing100": the core row (svcmesh.mjs) with tracing on and an
// OpenTelemetry SDK registered in both processes: spans sampled (parent-based) and
// svc.trace records published at 1% and at 100%. Compare with the "svcmesh" row
// (tracing off). With args { sdk: false } ("tracing1nosdk"), no SDK: what the mesh's own
// tracing costs. With args { rootSampling: "mesh" } ("tracing1mesh"), the mesh decides
// which calls are traced (connect's trace.rootSampling) and the SDK has its default
// sampler (parent-based, every root recorded), so it is asked only for the 1% kept.
import { registerTracing } from "../otel.mjs";
import * as core from "./svcmesh.mjs";

function sdkFor(rate, args) {
  if (args?.sdk === false) return () => Promise.resolve();
  return registerTracing(args?.rootSampling === "mesh" ? 1 : rate);
}

/** Runs `start` with the SDK registered; closing it also shuts the SDK down. */
async function withSdk(rate, args, start) {
  const shutdown = sdkFor(rate, args);
  const started = await start({ trace: { sampleRate: rate, ...(args?.rootSampling ? { rootSampling: args.rootSampling } : {}) } });
  return { ...started, close: async () => { await started.close(); await shutdown(); } };
}

export function tracingRow(rate) {
  return {
    serve: (url, args) => withSdk(rate, args, (options) => core.serve(url, options)),
    caller: (url, args) => withSdk(rate, args, (options) => core.caller(url, options)),
  };
}
