// Child process: one measurement of one row at one concurrency.
//   node bench/caller.mjs <row> <natsUrl> <inFlight> <warmupMs> <durationMs>
// Runs <inFlight> closed-loop workers for warmup + duration, records the latency of
// every call that completes inside the measured window (in histogram.mjs's buckets),
// and sends { result } to the parent over IPC. { mark: "start" | "end" } tell the parent when the window opens and
// closes, so it can account CPU for exactly that window (cpu.mjs).
import { LatencyHistogram } from "./histogram.mjs";
import { loadRow } from "./rows/index.mjs";

const [rowId, url, ...nums] = process.argv.slice(2);
const [inFlight, warmupMs, durationMs] = nums.map(Number);
if (![inFlight, warmupMs, durationMs].every((n) => Number.isInteger(n) && n >= 0) || inFlight < 1 || durationMs < 1) {
  throw new Error(`usage: caller.mjs <row> <natsUrl> <inFlight> <warmupMs> <durationMs> (got ${process.argv.slice(2).join(" ")})`);
}
process.on("disconnect", () => process.exit(1));

// Room for 1M calls/s, far above what this machine does: bounds the loop in count, as
// `end` bounds it in time; no worker starts a call past either.
const capacity = Math.ceil(durationMs * 1000);
const maxCalls = Math.ceil((warmupMs + durationMs) * 1000);
const latencies = new LatencyHistogram();
let completed = 0;
let errors = 0;
let totalCalls = 0; // warm-up included: what a CPU profile of this process saw
let firstError;

const client = await (await loadRow(rowId)).caller(url);
const start = performance.now() + warmupMs;
const end = start + durationMs;
// Marked by the workers themselves, so "end" always reaches the parent before the result.
const marked = new Set();
function mark(name) {
  if (marked.has(name)) return;
  marked.add(name);
  process.send({ mark: name });
  process.emit("bench-mark", name); // alloc-sampler.mjs, when run.mjs --alloc preloads it
}

async function worker() {
  for (;;) {
    const t0 = performance.now();
    if (t0 >= end || totalCalls >= maxCalls || completed + errors >= capacity) return mark("end");
    let ok = true;
    try {
      await client.call();
    } catch (e) {
      ok = false;
      firstError ??= String(e?.message ?? e);
    }
    const t1 = performance.now();
    totalCalls++;
    if (t1 < start || t1 >= end) continue; // warm-up, or finished after the window closed
    if (completed + errors === 0) mark("start");
    if (ok) {
      latencies.record((t1 - t0) * 1000);
      completed++;
    }
    else errors++;
  }
}

await Promise.all(Array.from({ length: inFlight }, worker));
await client.close();

const quantileUs = (q) => (completed ? Math.round(latencies.quantile(q)) : null);
process.send(
  {
    result: {
      completed,
      errors,
      totalCalls,
      firstError,
      capped: totalCalls >= maxCalls || completed + errors >= capacity,
      rps: completed / (durationMs / 1000),
      p50us: quantileUs(0.5),
      p99us: quantileUs(0.99),
    },
  },
  () => process.exit(0),
);
