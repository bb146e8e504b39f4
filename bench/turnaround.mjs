// Preloaded into bench children (`node --import bench/turnaround.mjs`, which
// interleaved.mjs --turnaround adds): how long the process takes from a socket read to
// its next socket write. At 1 request in flight that is one message's whole way through
// the process: the caller from a reply to the next request, the service from a request
// to its reply. Every process on this VM sleeps between messages, so this is the cost of
// the code path run cold, which decides the latency at 1 in flight and barely shows at
// 256 in flight (where one read carries many messages, and the figure is a batch's).
//
// Each process writes its figures (microseconds: the last RING reads answered) to
// $BENCH_TURNAROUND_DIR/<pid>.json once a second; readTurnaround() reads them back.
import net from "node:net";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const RING = 20_000;

/** Per-process figures written by this preload, keyed by pid (missing ones left out). */
export function readTurnaround(dir, pids) {
  const out = {};
  for (const pid of pids) {
    try {
      out[pid] = JSON.parse(readFileSync(join(dir, `${pid}.json`), "utf8"));
    } catch {
      // never wrote (no traffic) or still starting
    }
  }
  return out;
}

const dir = process.env.BENCH_TURNAROUND_DIR;
if (dir && process.send) install(dir); // only in forked bench children, not in the parent importing readTurnaround

function install(dir) {
  const ring = new Float64Array(RING);
  let count = 0;
  let lastRead = 0;
  const emit = net.Socket.prototype.emit;
  net.Socket.prototype.emit = function (event, ...args) {
    if (event === "data") lastRead = performance.now();
    return emit.call(this, event, ...args);
  };
  const write = net.Socket.prototype.write;
  net.Socket.prototype.write = function (...args) {
    if (lastRead > 0) {
      ring[count++ % RING] = (performance.now() - lastRead) * 1000;
      lastRead = 0;
    }
    return write.apply(this, args);
  };
  setInterval(() => {
    if (count < 100) return;
    const sorted = ring.slice(0, Math.min(count, RING)).sort();
    const q = (p) => Math.round(sorted[Math.floor(p * (sorted.length - 1))] * 10) / 10;
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ reads: count, p25: q(0.25), p50: q(0.5), p75: q(0.75), p90: q(0.9) }));
  }, 1000).unref();
}
