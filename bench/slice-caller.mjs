// Child process of interleaved.mjs: one row's caller, kept running, measuring in short
// slices on command.
//   node bench/slice-caller.mjs <row> <natsUrl> <inFlight>
// Messages in: { slice: { warmupMs, measureMs, inFlight? } } runs one measured window
// (window.mjs) of <inFlight> closed-loop workers (or the slice's own count); "stop" closes and exits. Messages out: { ready: true }
// once connected; per slice { mark: "start" | "end" } when the measured part opens and
// closes (the parent reads CPU then, cpu.mjs), then { result }. Between slices the
// process is idle, so several rows can stay up side by side and take turns.
// { slice, profile: FILE } also writes a CPU profile of that slice to FILE (node:inspector,
// in this process), { slice, allocProfile: FILE } an allocation profile (.heapprofile):
// a process found slow mid-run can be profiled without a restart.
// "heap" → { heap: [{ space, usedMB, sizeMB }] }, V8's heap spaces; { heapSnapshot: FILE }
// writes a heap snapshot there → { snapshot: FILE }.
import { writeFileSync } from "node:fs";
import { getHeapSpaceStatistics, writeHeapSnapshot } from "node:v8";
import { startProfile } from "./inspector-profile.mjs";
import { loadRow } from "./rows/index.mjs";
import { runWindow } from "./window.mjs";

const [rowId, url, inFlightText] = process.argv.slice(2);
const inFlight = Number(inFlightText);
if (!rowId || !url || !Number.isInteger(inFlight) || inFlight < 1) {
  throw new Error(`usage: slice-caller.mjs <row> <natsUrl> <inFlight> (got ${process.argv.slice(2).join(" ")})`);
}
process.on("disconnect", () => process.exit(1));

const client = await (await loadRow(rowId)).caller(url);
const mark = (name) => process.send({ mark: name });

process.on("message", async (m) => {
  // Test "stop" first: a string has a .slice method too.
  if (m === "stop") {
    await client.close();
    process.exit(0);
  } else if (m === "heap") {
    process.send({ heap: getHeapSpaceStatistics().map((s) => ({ space: s.space_name, usedMB: Math.round(s.space_used_size / 1e5) / 10, sizeMB: Math.round(s.space_size / 1e5) / 10 })) });
  } else if (m?.heapSnapshot) {
    process.send({ snapshot: writeHeapSnapshot(m.heapSnapshot) });
  } else if (m?.slice) {
    const stopProfile = m.profile ? await startProfile("cpu") : m.allocProfile ? await startProfile("alloc") : undefined;
    const result = await runWindow(() => client.call(), { inFlight: m.slice.inFlight ?? inFlight, warmupMs: m.slice.warmupMs, durationMs: m.slice.measureMs, mark });
    if (stopProfile) writeFileSync(m.profile ?? m.allocProfile, JSON.stringify(await stopProfile()));
    process.send({ result });
  }
});
process.send({ ready: true });
