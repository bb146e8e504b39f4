// Rows "tracing1" and "tracing100": the core row (svcmesh.mjs) with tracing on and an
// OpenTelemetry SDK registered in both processes: spans sampled (parent-based) and
// svc.trace records published at 1% and at 100%. Compare with the "svcmesh" row
// (tracing off). With args { sdk: false } ("tracing1nosdk"), no SDK: what the mesh's own
// tracing costs.
import { registerTracing } from "../otel.mjs";
import * as core from "./svcmesh.mjs";

function sdkFor(rate, args) {
  return args?.sdk === false ? () => Promise.resolve() : registerTracing(rate);
}

/** Runs `start` with the SDK registered; closing it also shuts the SDK down. */
async function withSdk(rate, args, start) {
  const shutdown = sdkFor(rate, args);
  const started = await start({ trace: { sampleRate: rate } });
  return { ...started, close: async () => { await started.close(); await shutdown(); } };
}

export function tracingRow(rate) {
  return {
    serve: (url, args) => withSdk(rate, args, (options) => core.serve(url, options)),
    caller: (url, args) => withSdk(rate, args, (options) => core.caller(url, options)),
  };
}
