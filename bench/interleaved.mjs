// The targets at 256 in flight, from rows that take turns every half second. Every row
// keeps its own nats-server, service and caller up for the whole run (each row its own
// server, so that rows serving the same service name never answer each other's calls);
// the callers take turns in short slices, in a rotating order, cycle after cycle. On
// this VM, whose speed can halve for seconds at a time, rows measured seconds or minutes
// apart (run.mjs, paired.mjs) compare badly; slices of a few hundred milliseconds spread
// every slow spell over all rows alike.
//
//   node bench/interleaved.mjs [--rows ceiling,svcmesh,...] [--cycles 20] [--inflight 256]
//                              [--slice-ms 400] [--slice-warmup-ms 100] [--warmup-ms 2000]
//                              [--copies 1] [--out FILE] [--prof DIR] [--heap] [--turnaround]
//
// A row named more than once runs as that many copies side by side (each measurement
// records its `copy`; the table merges them): how much two processes of one row differ.
// --copies N starts every row N times: one process can stay up to ~45% slower than its copy for
// its whole life, so targets judged on one process pair per row can mislead.
// A row written `row@DIR` runs from the checkout whose bench/ is DIR (callers and
// services of that build; node_modules and dist built there): two builds side by side,
// e.g. `--rows tracing1mesh,tracing1mesh@/tmp/old/bench` for a before/after that the
// VM's slow spells hit alike.
// --prof DIR writes CPU profiles of every caller and service to DIR/<copy>-<row>/{caller,service}
// and prints each copy's calls (warm-up included) for profile-summary.mjs --calls: profiles
// taken while the rows take turns see the same slow spells, unlike run.mjs --prof's.
// --heap prints every caller's V8 new and old space after the last cycle.
// --turnaround prints each caller's and service's time from a socket read to its next
// write (turnaround.mjs): at --inflight 1, where each call's way through a process runs
// cold, it says which side of a row its latency comes from.
//
// Each cycle is a "round" in run.mjs's sense (summary.mjs pairs ratios by it), so the
// table and the target check are run.mjs's own; after them, each target is judged cycle
// by cycle as paired.mjs judges it alternation by alternation (median, quartiles, cycles
// met). CPU per call comes from /proc ticks (10 ms) over each slice: a slice's figure is
// rough, the median over cycles is not. Measured here (RESULTS.md): even slices half a
// second apart can differ 2x, so read the quartiles, not one cycle.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { benchScript, forkChild, killAll, meanRss, nextMessage, startServices, stopAllOnSignal, stopChildren } from "./children.mjs";
import { claimBytes } from "./contract.mjs";
import { cpuSnapshot, cpuWindow } from "./cpu.mjs";
import { machine, svcmeshBuild } from "./machine.mjs";
import { startNatsServer } from "./nats-server.mjs";
import { ROWS } from "./rows/index.mjs";
import { formatCopies } from "./copies.mjs";
import { formatTables, summarize } from "./summary.mjs";
import { readTurnaround } from "./turnaround.mjs";
import { TARGET_ROWS, checkTargets, formatTargets, formatTargetsPerRun } from "./targets.mjs";

const START_TIMEOUT_MS = 60_000;

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: TARGET_ROWS.join(",") },
    cycles: { type: "string", default: "20" },
    copies: { type: "string", default: "1" },
    inflight: { type: "string", default: "256" },
    "slice-ms": { type: "string", default: "400" },
    "slice-warmup-ms": { type: "string", default: "100" },
    "warmup-ms": { type: "string", default: "2000" },
    out: { type: "string" },
    prof: { type: "string" },
    heap: { type: "boolean", default: false },
    turnaround: { type: "boolean", default: false },
  },
});
const int = (name, min, max) => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}, got ${values[name]}`);
  return n;
};
const cycles = int("cycles", 1, 200);
const copies = int("copies", 1, 8);
const inFlight = int("inflight", 1, 4096);
const sliceMs = int("slice-ms", 50, 10_000);
const sliceWarmupMs = int("slice-warmup-ms", 0, 10_000);
const warmupMs = int("warmup-ms", 0, 60_000);
const rowSpecs = values.rows.split(",").map((r) => r.trim()).filter(Boolean).map((spec) => {
  const at = spec.indexOf("@");
  return at < 0 ? { spec, row: spec, benchDir: undefined } : { spec, row: spec.slice(0, at), benchDir: spec.slice(at + 1) };
});
const specs = Array.from({ length: copies }, () => rowSpecs).flat();
for (const { row, benchDir } of specs) {
  if (!ROWS[row]) throw new Error(`unknown row ${row} (node bench/run.mjs --help lists them)`);
  if (benchDir !== undefined && !existsSync(join(benchDir, "slice-caller.mjs"))) throw new Error(`${benchDir} is not a bench/ directory (no slice-caller.mjs)`);
}
const rows = specs.map((s) => s.spec);

// Children inherit the directory through the environment (children.mjs passes it on).
const turnaroundDir = values.turnaround ? mkdtempSync(join(tmpdir(), "svcmesh-turnaround-")) : undefined;
if (turnaroundDir) process.env.BENCH_TURNAROUND_DIR = turnaroundDir;
const turnaroundArgs = turnaroundDir ? ["--import", new URL("./turnaround.mjs", import.meta.url).href] : [];

const childArgs = (copy, row, role) => [
  ...(values.prof ? ["--cpu-prof", `--cpu-prof-dir=${join(values.prof, `${copy}-${row}`, role)}`] : []),
  ...turnaroundArgs,
];

/** One row's server, service processes and caller, all kept up. */
async function startRow({ spec, row, benchDir }, copy) {
  const server = await startNatsServer();
  const services = await startServices(row, server.url, ROWS[row].instances, childArgs(copy, row, "service"), START_TIMEOUT_MS, benchDir);
  const caller = forkChild(benchScript("slice-caller.mjs", benchDir), [row, server.url, String(inFlight)], childArgs(copy, row, "caller"));
  await nextMessage(caller, "ready", START_TIMEOUT_MS);
  // A row from another checkout keeps its spec as its name, so the table shows it apart.
  return { row: spec, server, services, caller, pids: { caller: caller.pid, service: services.map((s) => s.pid), server: server.pid } };
}

// Writing a CPU profile of a long run takes a while at exit.
const STOP_GRACE_MS = values.prof ? 60_000 : 5_000;

async function stopRow(r) {
  await stopChildren([r.caller, ...r.services], STOP_GRACE_MS);
  await r.server.stop();
}

/** One slice of one row: { result, cpu } for the measured part. */
async function runSlice(r, warmup, measure) {
  const marks = {};
  const onMark = (m) => {
    if (m?.mark) marks[m.mark] = cpuSnapshot(r.pids);
  };
  r.caller.on("message", onMark);
  try {
    r.caller.send({ slice: { warmupMs: warmup, measureMs: measure } });
    const { result } = await nextMessage(r.caller, "result", warmup + measure + 30_000);
    r.totalCalls = (r.totalCalls ?? 0) + result.totalCalls;
    return { ...result, cpu: cpuWindow(marks.start, marks.end, result.completed) };
  } finally {
    r.caller.off("message", onMark);
  }
}

/** The caller's V8 heap spaces after the last cycle (slice-caller.mjs "heap"). */
async function callerHeap(r) {
  r.caller.send("heap");
  return (await nextMessage(r.caller, "heap", 10_000)).heap;
}

/** Each copy's caller and service turnaround (µs, from a socket read to the next write). */
function formatTurnaround(started, figures) {
  const cell = (f) => (f ? `${f.p50} (${f.p25}–${f.p75})` : "–");
  const lines = started.map((r, copy) => `| ${copy} | ${r.row} | ${cell(figures[r.pids.caller])} | ${r.pids.service.map((pid) => cell(figures[pid])).join(", ")} |`);
  return ["Turnaround: µs from a socket read to the next write, median (quartiles) of each process's last 20,000", "", "| copy | row | caller | service |", "| ---: | --- | ---: | ---: |", ...lines].join("\n");
}

/** Each copy's young and old generation: a caller whose new space stayed small promotes more and collects more often. */
function formatHeaps(started) {
  const mb = (heap, space, field) => heap.find((s) => s.space === space)?.[field] ?? "–";
  const lines = started.map((r, copy) => `| ${copy} | ${r.row} | ${mb(r.heap, "new_space", "sizeMB")} | ${mb(r.heap, "old_space", "sizeMB")} | ${mb(r.heap, "old_space", "usedMB")} |`);
  return ["Callers' heaps after the last cycle (MB)", "", "| copy | row | new space size | old space size | old space used |", "| ---: | --- | ---: | ---: | ---: |", ...lines].join("\n");
}

async function main() {
  const host = { ...machine(), svcmeshBuild: svcmeshBuild() };
  const started = [];
  stopAllOnSignal(started);
  const measurements = [];
  let turnaround;
  try {
    for (const [copy, spec] of specs.entries()) started.push(await startRow(spec, copy));
    console.error(`${rows.length} rows up (a nats-server, service and caller each); svcmesh build ${host.svcmeshBuild} (commit ${host.commit}); ` +
      `${cycles} cycles of ${sliceWarmupMs} + ${sliceMs} ms slices at ${inFlight} in flight`);
    // Every row warms up once (JIT, caches, discovery) before any slice counts.
    for (const r of started) await runSlice(r, warmupMs, sliceMs);
    for (let cycle = 1; cycle <= cycles; cycle++) {
      // A rotating order, so no row always follows the same neighbour.
      const order = started.map((_, i) => started[(i + cycle) % started.length]);
      for (const r of order) {
        const m = await runSlice(r, sliceWarmupMs, sliceMs);
        measurements.push({ round: cycle, row: r.row, copy: started.indexOf(r), inFlight, instances: r.services.length, ...m, rss: await meanRss(r.services) });
      }
      const errors = measurements.filter((m) => m.round === cycle && m.errors > 0).map((m) => `${m.row} ${m.errors} (${m.firstError})`);
      console.error(`cycle ${cycle}/${cycles} done${errors.length ? `; errors: ${errors.join(", ")}` : ""}`);
    }
    if (values.heap) for (const r of started) r.heap = await callerHeap(r);
    if (turnaroundDir) {
      await sleep(1_100); // each process writes its figures once a second
      turnaround = readTurnaround(turnaroundDir, started.flatMap((r) => [r.pids.caller, ...r.pids.service]));
    }
  } finally {
    if (turnaroundDir) rmSync(turnaroundDir, { recursive: true, force: true });
    await Promise.race([Promise.all(started.map(stopRow)), sleep(STOP_GRACE_MS + 10_000)]);
    await killAll();
  }

  if (values.prof) {
    for (const [copy, r] of started.entries()) console.error(`profiles of ${r.row} in ${join(values.prof, `${copy}-${r.row}`)}: ${r.totalCalls} calls in all (profile-summary.mjs --calls)`);
  }
  const table = summarize(measurements);
  console.log(formatTables(table));
  console.log("\n" + formatTargets(checkTargets(table)));
  const perCycle = Array.from({ length: cycles }, (_, i) => measurements.filter((m) => m.round === i + 1));
  console.log(`\n${formatCopies(started.map((r) => r.row), measurements)}`);
  if (values.heap) console.log(`\n${formatHeaps(started)}`);
  if (turnaround) console.log(`\n${formatTurnaround(started, turnaround)}`);
  console.log(`\n${formatTargetsPerRun(perCycle, "Targets judged cycle by cycle (ratio within each cycle: median, quartiles, cycles met)")}`);
  if (svcmeshBuild() !== host.svcmeshBuild) {
    process.exitCode = 1;
    console.error("WARNING: packages/svcmesh/dist changed during the run: the svcmesh rows mix two builds; run again");
  }
  if (values.out) {
    mkdirSync(dirname(values.out), { recursive: true });
    const settings = { interleaved: true, cycles, copies, inFlight, sliceMs, sliceWarmupMs, warmupMs, rows };
    writeFileSync(values.out, JSON.stringify({ date: new Date().toISOString(), machine: host, settings, requestBytes: claimBytes, table, measurements }, null, 2) + "\n");
    console.error(`wrote ${values.out}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
