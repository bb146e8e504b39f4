// Caller and service in this one process on a private nats-server, configurations taking
// turns round after round, so drift and neighbours on the shared machine spread over all
// of them alike. CPU time per call moves far less with a busy neighbour than req/s does:
// these tools (tracing-cost.mjs, audit-cost.mjs) are for working on one feature's cost;
// run.mjs's rows are the figures.
import { parseArgs } from "node:util";
import { cpuSnapshot, cpuWindow } from "./cpu.mjs";

/**
 * The options every such tool takes: --rounds, --ms (measured per window), --inflight,
 * and --configs, a comma-separated subset of `known` (default: `defaultConfigs`); `extra`
 * declares a tool's own options (parseArgs form), returned alongside.
 */
export function runOptions(known, defaultConfigs, extra = {}) {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" }, ms: { type: "string", default: "2000" }, inflight: { type: "string", default: "256" }, configs: { type: "string", default: defaultConfigs }, ...extra } });
  const configs = values.configs.split(",");
  for (const c of configs) if (!known[c]) throw new Error(`unknown config ${c}; known: ${Object.keys(known).join(", ")}`);
  return { ...values, rounds: Number(values.rounds), measureMs: Number(values.ms), inFlight: Number(values.inflight), configs };
}

/** Calls `call` from `inFlight` closed-loop workers for `ms` (and at most ms × 1000 calls). */
export async function closedLoop(call, ms, inFlight) {
  const end = performance.now() + ms;
  const maxCalls = ms * 1000; // bounded in count as well as time
  let started = 0;
  let calls = 0;
  let errors = 0;
  const worker = async () => {
    while (performance.now() < end && started++ < maxCalls) {
      try {
        await call();
        calls++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { calls, errors };
}

/** A 500 ms warm-up, then `ms` measured: req/s and CPU per call of this process ("mesh") and nats-server. */
export async function measureWindow(call, { serverPid, ms, inFlight }) {
  const warm = await closedLoop(call, 500, inFlight);
  const a = cpuSnapshot({ mesh: process.pid, server: serverPid });
  const t0 = performance.now();
  const { calls, errors } = await closedLoop(call, ms, inFlight);
  const b = cpuSnapshot({ mesh: process.pid, server: serverPid });
  const rps = calls / ((performance.now() - t0) / 1000);
  return { rps, calls, errors, allCalls: warm.calls + calls, allErrors: warm.errors + errors, ...cpuWindow(a, b, calls) };
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

/**
 * The table of configurations: CPU per call and, when "off" was measured, each one's
 * ratio to "off" paired round by round (the VM's speed drifts between rounds, so a
 * configuration is compared with "off" of the same round). `results[c]` is one
 * measureWindow() result per round.
 */
export function printPairedTable(configs, results) {
  const total = (m) => m.perCallUs.mesh + m.perCallUs.server;
  const paired = (c) => (results.off ? results[c].map((m, i) => total(results.off[i]) / total(m)).sort((x, y) => x - y) : undefined);
  const ratioText = (rs) => (rs ? `${median(rs).toFixed(2)}× (${rs[0].toFixed(2)}–${rs[rs.length - 1].toFixed(2)})` : "–");
  console.log("| config | CPU µs/call caller+service | nats-server | total | × off at equal CPU, paired by round: median (min–max) | req/s (median) |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const c of configs) {
    const ms = results[c];
    console.log(
      `| ${c} | ${median(ms.map((m) => m.perCallUs.mesh)).toFixed(1)} | ${median(ms.map((m) => m.perCallUs.server)).toFixed(1)} | ${median(ms.map(total)).toFixed(1)} | ${ratioText(paired(c))} | ${Math.round(median(ms.map((m) => m.rps)))} |`,
    );
  }
}
