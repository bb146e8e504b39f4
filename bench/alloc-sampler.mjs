// Preloaded into caller and service by `run.mjs --alloc DIR` (node --import): V8's
// sampling heap profiler (settings: inspector-profile.mjs), so a profile shows what each
// call allocates, not only what survives. Bytes
// allocated per call are a count, not a time: they hold still while the VM's speed
// swings, and each one is memory written and then collected.
//
// Sampling covers each measured window only: the caller emits "bench-mark" start/end
// (caller.mjs), and run.mjs passes the marks on to the service processes. Each window
// is written to DIR/<caller|service>/Alloc.<row>.<inFlight>.<pid>.heapprofile; read it
// with `profile-summary.mjs --calls <calls in the window>` (run.mjs prints that count).
import { Session } from "node:inspector";
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { ALLOC_SAMPLING } from "./inspector-profile.mjs";

const dir = process.env.BENCH_ALLOC_DIR;
if (dir) {
  // caller.mjs and service.mjs take the row id first; the caller the in-flight count third.
  const [script = "process", row = "row", , inFlight] = process.argv.slice(1);
  const role = basename(script, ".mjs");
  const session = new Session();
  session.connect();
  session.post("HeapProfiler.enable");
  // A session on the main thread answers synchronously.
  const stop = (save) =>
    session.post("HeapProfiler.stopSampling", (err, result) => {
      if (err || !save) return;
      mkdirSync(join(dir, role), { recursive: true });
      writeFileSync(join(dir, role, `Alloc.${row}.${save}.${process.pid}.heapprofile`), JSON.stringify(result.profile));
    });
  let sampling = false;
  let windows = 0;
  process.on("bench-mark", (name) => {
    if (name === "start" && !sampling) {
      sampling = true;
      session.post("HeapProfiler.startSampling", ALLOC_SAMPLING);
    } else if (name === "end" && sampling) {
      sampling = false;
      stop(inFlight ?? `window${++windows}`);
    }
  });
}
