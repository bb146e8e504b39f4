// Child process: serves one row until told to stop.
//   node bench/service.mjs <row> <natsUrl>   (forked by run.mjs with an IPC channel)
// Messages in:  "rss" → { rss } (bytes),  { mark } → the caller's measured window opens
// or closes, "stop" → drains and exits 0 (a clean exit, so --cpu-prof can write its profile).  Message out: { ready: true } once serving.
import { loadRow } from "./rows/index.mjs";

const [rowId, url] = process.argv.slice(2);
const svc = await (await loadRow(rowId)).serve(url);

process.on("message", async (m) => {
  if (m === "rss") {
    process.send({ rss: process.memoryUsage().rss });
  } else if (m?.mark) {
    process.emit("bench-mark", m.mark); // the caller's window, for alloc-sampler.mjs (run.mjs --alloc)
  } else if (m === "stop") {
    await svc.close();
    process.exit(0);
  }
});
// The parent died or gave up on us: never outlive it.
process.on("disconnect", () => process.exit(1));
process.send({ ready: true });
