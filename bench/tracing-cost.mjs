// What tracing costs per call, in CPU rather than req/s: caller and service run in this
// one process on a private nats-server, and the configurations take turns, round after
// round, so drift and neighbours on the shared machine spread over all of them alike.
// CPU time per call moves far less with a busy neighbour than req/s does, so this is
// the tool for working on tracing's cost; run.mjs's tracing rows are the figures.
//
//   node bench/tracing-cost.mjs [--rounds 5] [--ms 2000] [--inflight 256] [--configs off,nosdk1,sdk1,sdk100]
//
// Read the paired column: each round compares a configuration with "off" of the same
// round, since the VM's speed drifts from round to round. More, shorter rounds
// (--rounds 12 --ms 700) pair more closely.
//
// Configurations: off (trace: false), nosdk1 / nosdk100 (trace records at 1% / 100%, no SDK), sdk1 / sdk100
// (an OpenTelemetry SDK with a 1% / 100% sampler, as bench/otel.mjs registers it, and
// trace records at the same rate), mesh1 (the mesh decides the 1% at the first hop,
// trace.rootSampling "mesh", with the SDK's sampler recording every root it is asked for).
import { trace } from "@opentelemetry/api";
import { measureWindow, printPairedTable, runOptions } from "./in-process.mjs";
import { startNatsServer } from "./nats-server.mjs";
import { registerTracing } from "./otel.mjs";
import * as core from "./rows/svcmesh.mjs";

// Caller and service share this process: without JetStream on the bench's server, their
// "not stored durably" warnings would bury the table (run.mjs's children log at warn).
process.env.SVCMESH_LOG_LEVEL ??= "error";

const CONFIGS = {
  off: { trace: false, sdk: undefined },
  nosdk1: { trace: { sampleRate: 0.01 }, sdk: undefined },
  nosdk100: { trace: { sampleRate: 1 }, sdk: undefined },
  sdk1: { trace: { sampleRate: 0.01 }, sdk: 0.01 },
  sdk100: { trace: { sampleRate: 1 }, sdk: 1 },
  mesh1: { trace: { sampleRate: 0.01, rootSampling: "mesh" }, sdk: 1 },
};
const { rounds, measureMs, inFlight, configs } = runOptions(CONFIGS, "off,nosdk1,sdk1,sdk100");

async function measure(url, name) {
  const { trace: traceOption, sdk } = CONFIGS[name];
  const shutdownSdk = sdk === undefined ? undefined : registerTracing(sdk);
  // The core row's own service and caller (rows/svcmesh.mjs), here in one process.
  const service = await core.serve(url, { trace: traceOption });
  const caller = await core.caller(url, { trace: traceOption });
  const m = await measureWindow(caller.call, { serverPid, ms: measureMs, inFlight });
  await caller.close();
  await service.close();
  await shutdownSdk?.();
  trace.disable(); // back to the API's no-op provider for the next configuration
  return m;
}

const server = await startNatsServer();
const serverPid = server.pid;
const results = Object.fromEntries(configs.map((c) => [c, []]));
try {
  for (let r = 1; r <= rounds; r++) {
    for (const c of configs) {
      const m = await measure(server.url, c);
      results[c].push(m);
      console.error(`round ${r} ${c.padEnd(7)} ${Math.round(m.rps)} req/s  CPU µs/call mesh ${m.perCallUs.mesh} nats ${m.perCallUs.server}  others ${m.otherCores} cores${m.errors ? `  errors ${m.errors}` : ""}`);
    }
  }
} finally {
  await server.stop();
}

printPairedTable(configs, results);
