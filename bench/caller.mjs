// Child process: one measurement of one row at one concurrency.
//   node bench/caller.mjs <row> <natsUrl> <inFlight> <warmupMs> <durationMs>
// Runs one measured window (window.mjs) and sends { result } to the parent over IPC.
// { mark: "start" | "end" } tell the parent when the window opens and closes, so it can
// account CPU for exactly that window (cpu.mjs).
import { loadRow } from "./rows/index.mjs";
import { runWindow } from "./window.mjs";

const [rowId, url, ...nums] = process.argv.slice(2);
const [inFlight, warmupMs, durationMs] = nums.map(Number);
if (![inFlight, warmupMs, durationMs].every((n) => Number.isInteger(n) && n >= 0) || inFlight < 1 || durationMs < 1) {
  throw new Error(`usage: caller.mjs <row> <natsUrl> <inFlight> <warmupMs> <durationMs> (got ${process.argv.slice(2).join(" ")})`);
}
process.on("disconnect", () => process.exit(1));

const client = await (await loadRow(rowId)).caller(url);
const mark = (name) => {
  process.send({ mark: name });
  process.emit("bench-mark", name); // alloc-sampler.mjs, when run.mjs --alloc preloads it
};
const result = await runWindow(() => client.call(), { inFlight, warmupMs, durationMs, mark });
await client.close();
process.send({ result }, () => process.exit(0));
