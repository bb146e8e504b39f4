// Child process of interleaved.mjs: one row's caller, kept running, measuring in short
// slices on command.
//   node bench/slice-caller.mjs <row> <natsUrl> <inFlight>
// Messages in: { slice: { warmupMs, measureMs } } runs <inFlight> closed-loop workers
// for warm-up + measure, then lets the calls in flight finish; "stop" closes and exits.
// Messages out: { ready: true } once connected; per slice { mark: "start" | "end" } when
// the measured part opens and closes (the parent reads CPU then, cpu.mjs), then
// { result } with the calls that completed inside it. Between slices the process is
// idle, so several rows can stay up side by side and take turns.
import { LatencyHistogram } from "./histogram.mjs";
import { loadRow } from "./rows/index.mjs";

const [rowId, url, inFlightText] = process.argv.slice(2);
const inFlight = Number(inFlightText);
if (!rowId || !url || !Number.isInteger(inFlight) || inFlight < 1) {
  throw new Error(`usage: slice-caller.mjs <row> <natsUrl> <inFlight> (got ${process.argv.slice(2).join(" ")})`);
}
process.on("disconnect", () => process.exit(1));

const client = await (await loadRow(rowId)).caller(url);

async function slice(warmupMs, measureMs) {
  const latencies = new LatencyHistogram();
  const start = performance.now() + warmupMs;
  const end = start + measureMs;
  // Room for 1M calls/s: bounds each slice in count as `end` bounds it in time.
  const maxCalls = Math.ceil((warmupMs + measureMs) * 1000);
  let issued = 0;
  let completed = 0;
  let errors = 0;
  let firstError;
  let opened = false;
  let closed = false;
  const mark = (name) => process.send({ mark: name });
  const worker = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end || issued >= maxCalls) {
        if (!closed) {
          closed = true;
          mark("end");
        }
        return;
      }
      issued++;
      let ok = true;
      try {
        await client.call();
      } catch (e) {
        ok = false;
        firstError ??= String(e?.message ?? e);
      }
      const t1 = performance.now();
      if (t1 < start || t1 >= end) continue; // warm-up, or finished after the window closed
      if (!opened) {
        opened = true;
        mark("start");
      }
      if (ok) {
        latencies.record((t1 - t0) * 1000);
        completed++;
      } else errors++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const q = (p) => (completed ? Math.round(latencies.quantile(p)) : null);
  return { completed, errors, firstError, rps: completed / (measureMs / 1000), p50us: q(0.5), p99us: q(0.99), capped: issued >= maxCalls };
}

process.on("message", async (m) => {
  if (m?.slice) {
    const result = await slice(m.slice.warmupMs, m.slice.measureMs);
    process.send({ result });
  } else if (m === "stop") {
    await client.close();
    process.exit(0);
  }
});
process.send({ ready: true });
