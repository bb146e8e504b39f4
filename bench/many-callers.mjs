// Many callers sharing one service: N caller processes call one service process at
// once, splitting the same total in flight (or, with --per-caller, each keeping it).
// A mesh's services are called by many other services' instances; every other bench
// has one caller per service. Each caller has its own reply subjects, so nats-server
// routes replies to more subjects and the service writes to one socket for several
// readers: this shows whether svcmesh keeps its ratio to bare nats.js as callers grow.
//
//   node bench/many-callers.mjs [--rows bare,ceiling,svcmesh] [--callers 1,2,4,8]
//        [--inflight 256] [--per-caller] [--cycles 8] [--slice-ms 600]
//        [--slice-warmup-ms 150] [--warmup-ms 1500]
//
// Every row keeps its own nats-server, service and max(callers) idle slice-callers up;
// the (row, N) pairs take turns in slices, in a rotating order, as interleaved.mjs's rows
// do. A slice starts N callers at once; its req/s is the sum of theirs; CPU per call is
// read from the first caller's "start" to the last caller's "end" (cpu.mjs). Prints per
// (row, N) the medians over cycles: total req/s, × bare at the same N (paired by cycle),
// the callers' median p99, and CPU µs per call of the callers, the service and nats-server.
import { parseArgs } from "node:util";
import { forkChild, stopAllOnSignal, nextMessage, startServices, stopChildren } from "./children.mjs";
import { cpuSnapshot, cpuWindow } from "./cpu.mjs";
import { machine, svcmeshBuild } from "./machine.mjs";
import { startNatsServer } from "./nats-server.mjs";
import { ROWS } from "./rows/index.mjs";
import { median } from "./summary.mjs";

const START_TIMEOUT_MS = 60_000;

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "bare,ceiling,svcmesh" },
    callers: { type: "string", default: "1,2,4,8" },
    inflight: { type: "string", default: "256" },
    "per-caller": { type: "boolean", default: false },
    cycles: { type: "string", default: "8" },
    "slice-ms": { type: "string", default: "600" },
    "slice-warmup-ms": { type: "string", default: "150" },
    "warmup-ms": { type: "string", default: "1500" },
  },
});
const int = (name, min, max, text = values[name]) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}, got ${text}`);
  return n;
};
const rows = values.rows.split(",").map((r) => r.trim()).filter(Boolean);
for (const row of rows) if (!ROWS[row]) throw new Error(`unknown row ${row} (node bench/run.mjs --help lists them)`);
if (!rows.includes("bare")) throw new Error("--rows must include bare: ratios are to bare at the same number of callers");
const counts = values.callers.split(",").map((c) => int("callers", 1, 32, c.trim()));
const total = int("inflight", 1, 4096);
const cycles = int("cycles", 1, 100);
const sliceMs = int("slice-ms", 50, 10_000);
const sliceWarmupMs = int("slice-warmup-ms", 0, 10_000);
const warmupMs = int("warmup-ms", 0, 60_000);
const maxCallers = Math.max(...counts);
const inFlightFor = (n) => (values["per-caller"] ? total : Math.max(1, Math.round(total / n)));

async function startRow(row) {
  const server = await startNatsServer();
  const services = await startServices(row, server.url, ROWS[row].instances, [], START_TIMEOUT_MS);
  const callers = Array.from({ length: maxCallers }, () => forkChild("slice-caller.mjs", [row, server.url, String(total)]));
  await Promise.all(callers.map((c) => nextMessage(c, "ready", START_TIMEOUT_MS)));
  return { row, server, services, callers };
}

/** One slice of `n` callers of row `r` at once: summed req/s, median p99, CPU per call. */
async function runSlice(r, n, warmup, measure) {
  const active = r.callers.slice(0, n);
  const pids = { caller: active.map((c) => c.pid), service: r.services.map((s) => s.pid), server: r.server.pid };
  let startSnap;
  let endSnap;
  let ended = 0;
  const onMark = (m) => {
    if (m?.mark === "start") startSnap ??= cpuSnapshot(pids);
    if (m?.mark === "end" && ++ended === n) endSnap = cpuSnapshot(pids);
  };
  for (const c of active) c.on("message", onMark);
  try {
    for (const c of active) c.send({ slice: { warmupMs: warmup, measureMs: measure, inFlight: inFlightFor(n) } });
    const results = (await Promise.all(active.map((c) => nextMessage(c, "result", warmup + measure + 30_000)))).map((m) => m.result);
    const completed = results.reduce((t, x) => t + x.completed, 0);
    const errors = results.reduce((t, x) => t + x.errors, 0);
    if (errors > 0) console.error(`${r.row} × ${n}: ${errors} errors (${results.find((x) => x.firstError)?.firstError})`);
    return { rps: results.reduce((t, x) => t + x.rps, 0), p99us: median(results.map((x) => x.p99us)), cpu: cpuWindow(startSnap, endSnap, completed) };
  } finally {
    for (const c of active) c.off("message", onMark);
  }
}

const fmt = (x, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? "–" : x.toFixed(digits));

function report(measurements) {
  const lines = [];
  lines.push(`| row | callers | in flight each | req/s (median) | × bare (paired; min–max) | p99 µs | caller / service / nats-server CPU µs per call | others' cores |`);
  lines.push(`| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`);
  for (const row of rows) {
    for (const n of counts) {
      const mine = measurements.filter((m) => m.row === row && m.n === n);
      const ratios = mine.map((m) => {
        const b = measurements.find((x) => x.row === "bare" && x.n === n && x.cycle === m.cycle);
        return b ? m.rps / b.rps : NaN;
      }).filter(Number.isFinite).sort((a, b) => a - b);
      const cpu = (role) => median(mine.map((m) => m.cpu?.perCallUs[role]).filter((v) => v !== null && v !== undefined));
      lines.push(`| ${row} | ${n} | ${inFlightFor(n)} | ${fmt(median(mine.map((m) => m.rps)))} | ${fmt(median(ratios), 2)} (${fmt(ratios[0], 2)}–${fmt(ratios.at(-1), 2)}) | ${fmt(median(mine.map((m) => m.p99us)))} | ${fmt(cpu("caller"), 1)} / ${fmt(cpu("service"), 1)} / ${fmt(cpu("server"), 1)} | ${fmt(median(mine.map((m) => m.cpu?.otherCores ?? NaN).filter(Number.isFinite)), 2)} |`);
    }
  }
  return lines.join("\n");
}

async function main() {
  const host = { ...machine(), svcmeshBuild: svcmeshBuild() };
  const started = [];
  stopAllOnSignal(started);
  const measurements = [];
  try {
    for (const row of rows) started.push(await startRow(row));
    console.error(`${rows.length} rows up, ${maxCallers} callers each; svcmesh build ${host.svcmeshBuild} (commit ${host.commit}); ` +
      `${cycles} cycles of ${sliceWarmupMs} + ${sliceMs} ms slices; ${values["per-caller"] ? `${total} in flight per caller` : `${total} in flight split over the callers`}`);
    const pairs = started.flatMap((r) => counts.map((n) => ({ r, n })));
    for (const { r, n } of pairs) await runSlice(r, n, warmupMs, sliceMs); // JIT, caches, discovery
    for (let cycle = 1; cycle <= cycles; cycle++) {
      const order = pairs.map((_, i) => pairs[(i + cycle) % pairs.length]);
      for (const { r, n } of order) measurements.push({ cycle, row: r.row, n, ...(await runSlice(r, n, sliceWarmupMs, sliceMs)) });
      console.error(`cycle ${cycle}/${cycles} done`);
    }
  } finally {
    await Promise.all(started.map(async (r) => {
      await stopChildren([...r.callers, ...r.services]);
      await r.server.stop();
    }));
  }
  console.log(`${host.cpus} cores (${host.cpuModel}), node ${host.node}, nats-server ${host.natsServer ?? "?"}, svcmesh ${host.svcmeshBuild}\n`);
  console.log(report(measurements));
}

await main();
