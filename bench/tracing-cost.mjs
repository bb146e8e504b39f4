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
import { parseArgs } from "node:util";
import { cpuSnapshot, cpuWindow } from "./cpu.mjs";
import { startNatsServer } from "./nats-server.mjs";
import { registerTracing } from "./otel.mjs";
import * as core from "./rows/svcmesh.mjs";

// Caller and service share this process: without JetStream on the bench's server, their
// "not stored durably" warnings would bury the table (run.mjs's children log at warn).
process.env.SVCMESH_LOG_LEVEL ??= "error";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" }, ms: { type: "string", default: "2000" }, inflight: { type: "string", default: "256" }, configs: { type: "string", default: "off,nosdk1,sdk1,sdk100" } } });
const rounds = Number(values.rounds);
const measureMs = Number(values.ms);
const inFlight = Number(values.inflight);
const CONFIGS = {
  off: { trace: false, sdk: undefined },
  nosdk1: { trace: { sampleRate: 0.01 }, sdk: undefined },
  nosdk100: { trace: { sampleRate: 1 }, sdk: undefined },
  sdk1: { trace: { sampleRate: 0.01 }, sdk: 0.01 },
  sdk100: { trace: { sampleRate: 1 }, sdk: 1 },
  mesh1: { trace: { sampleRate: 0.01, rootSampling: "mesh" }, sdk: 1 },
};
const configs = values.configs.split(",");
for (const c of configs) if (!CONFIGS[c]) throw new Error(`unknown config ${c}`);

async function measure(url, name) {
  const { trace: traceOption, sdk } = CONFIGS[name];
  const shutdownSdk = sdk === undefined ? undefined : registerTracing(sdk);
  // The core row's own service and caller (rows/svcmesh.mjs), here in one process.
  const service = await core.serve(url, { trace: traceOption });
  const caller = await core.caller(url, { trace: traceOption });
  let calls = 0;
  let errors = 0;
  const run = async (ms) => {
    const end = performance.now() + ms;
    const maxCalls = ms * 1000; // bounded in count as well as time
    let started = 0;
    const worker = async () => {
      while (performance.now() < end && started++ < maxCalls) {
        try {
          await caller.call();
          calls++;
        } catch {
          errors++;
        }
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
  };
  await run(500); // warm-up
  calls = 0;
  const a = cpuSnapshot({ mesh: process.pid, server: serverPid });
  const t0 = performance.now();
  await run(measureMs);
  const b = cpuSnapshot({ mesh: process.pid, server: serverPid });
  const rps = calls / ((performance.now() - t0) / 1000);
  await caller.close();
  await service.close();
  await shutdownSdk?.();
  trace.disable(); // back to the API's no-op provider for the next configuration
  return { rps, errors, ...cpuWindow(a, b, calls) };
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

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const total = (m) => m.perCallUs.mesh + m.perCallUs.server;
const base = configs.includes("off") ? median(results.off.map(total)) : undefined;
// The VM's speed drifts between rounds: a configuration is compared with "off" of the
// same round, and the median and spread of those paired ratios are what to read.
const paired = (c) => (base ? results[c].map((m, i) => total(results.off[i]) / total(m)).sort((x, y) => x - y) : undefined);
const ratioText = (rs) => (rs ? `${median(rs).toFixed(2)}× (${rs[0].toFixed(2)}–${rs[rs.length - 1].toFixed(2)})` : "–");
console.log("| config | CPU µs/call caller+service | nats-server | total | × off at equal CPU, paired by round: median (min–max) | req/s (median) |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const c of configs) {
  const ms = results[c];
  const t = median(ms.map(total));
  console.log(`| ${c} | ${median(ms.map((m) => m.perCallUs.mesh)).toFixed(1)} | ${median(ms.map((m) => m.perCallUs.server)).toFixed(1)} | ${t.toFixed(1)} | ${ratioText(paired(c))} | ${Math.round(median(ms.map((m) => m.rps)))} |`);
}
