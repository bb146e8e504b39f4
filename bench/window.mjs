// One measured window of closed-loop calls: <inFlight> workers each call, wait for the
// answer and call again, for warm-up + duration. Only calls that finish inside the
// measured part count; their latencies go into histogram.mjs's buckets. `mark("start")`
// runs when the first counted call finishes and `mark("end")` when the first worker
// stops, so the parent can read CPU for exactly that span (cpu.mjs). Shared by
// caller.mjs (one window per process) and slice-caller.mjs (one per slice).
import { PerformanceObserver } from "node:perf_hooks";
import { setImmediate as tick } from "node:timers/promises";
import { LatencyHistogram } from "./histogram.mjs";

/**
 * Garbage collections in this process from now until `stop()`: count and ms, young
 * ("minor": scavenges) and old ("major": mark-compacts) apart. Entries are delivered
 * asynchronously, so stop() waits a turn for the last ones.
 */
function watchGc() {
  const entries = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ entryTypes: ["gc"] });
  return async (from, to) => {
    await tick();
    observer.disconnect();
    const gc = { minor: 0, minorMs: 0, major: 0, majorMs: 0 };
    for (const e of entries) {
      if (e.startTime < from || e.startTime >= to) continue;
      // Node's kinds: 1 minor (scavenge), 4 major (mark-compact), 8 incremental marking
      // (old generation work too), 16 weak callbacks.
      const k = e.detail?.kind;
      const kind = k === 4 || k === 8 ? "major" : "minor";
      gc[kind]++;
      gc[`${kind}Ms`] += e.duration;
    }
    return gc;
  };
}

export async function runWindow(call, { inFlight, warmupMs, durationMs, mark }) {
  const latencies = new LatencyHistogram();
  const start = performance.now() + warmupMs;
  const end = start + durationMs;
  // Room for 1M calls/s, far above what this machine does: bounds the loop in count, as
  // `end` bounds it in time; no worker starts a call past either.
  const capacity = Math.ceil(durationMs * 1000);
  const maxCalls = Math.ceil((warmupMs + durationMs) * 1000);
  let completed = 0;
  let errors = 0;
  let totalCalls = 0; // warm-up included: what a CPU profile of the process saw
  let firstError;
  const marked = new Set();
  const stopGc = watchGc();
  const once = (name) => {
    if (marked.has(name)) return;
    marked.add(name);
    mark(name);
  };
  const worker = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end || totalCalls >= maxCalls || completed + errors >= capacity) return once("end");
      let ok = true;
      try {
        await call();
      } catch (e) {
        ok = false;
        firstError ??= String(e?.message ?? e);
      }
      const t1 = performance.now();
      totalCalls++;
      if (t1 < start || t1 >= end) continue; // warm-up, or finished after the window closed
      if (completed + errors === 0) once("start");
      if (ok) {
        latencies.record((t1 - t0) * 1000);
        completed++;
      } else errors++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const gc = await stopGc(start, end);
  const quantileUs = (q) => (completed ? Math.round(latencies.quantile(q)) : null);
  return {
    completed,
    errors,
    totalCalls,
    firstError,
    capped: totalCalls >= maxCalls || completed + errors >= capacity,
    rps: completed / (durationMs / 1000),
    p50us: quantileUs(0.5),
    p99us: quantileUs(0.99),
    // The measured part's collections in the calling process, per 1,000 calls completed.
    gcPer1kCalls: completed ? { minor: (gc.minor * 1000) / completed, major: (gc.major * 1000) / completed, ms: ((gc.minorMs + gc.majorMs) * 1000) / completed } : null,
  };
}
