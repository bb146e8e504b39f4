// Shared by the raw nats.js experiments (reply-subjects.mjs, request-subjects.mjs): their
// command line, and rounds that take each mode in turn (a warm-up, then a measured run,
// nats-server's CPU and this process's read from /proc), printed as one table of medians.
import { parseArgs } from "node:util";
import { cpuSnapshot, cpuWindow } from "./cpu.mjs";
import { median } from "./summary.mjs";

/** --rounds, --ms and --inflight, checked. */
export function rawBenchArgs() {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, ms: { type: "string", default: "1500" }, inflight: { type: "string", default: "256" } } });
  const args = { rounds: Number(values.rounds), measureMs: Number(values.ms), inFlight: Number(values.inflight) };
  if (!Object.values(args).every((n) => Number.isInteger(n) && n > 0)) throw new Error("--rounds, --ms and --inflight must be positive whole numbers");
  return args;
}

/**
 * Runs `run(modeArg, ms)` (resolving to the calls made) for each [label, modeArg] of
 * `modes`, `rounds` times over, and prints the table headed `what` (its first column).
 * `serverPid` is nats-server's; the caller and responder are this process.
 */
export async function measureModes({ what, modes, rounds, measureMs, serverPid, run }) {
  const results = new Map(modes.map(([label]) => [label, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const [label, arg] of modes) {
      await run(arg, 300); // warm-up
      const a = cpuSnapshot({ clients: process.pid, server: serverPid });
      const t0 = performance.now();
      const calls = await run(arg, measureMs);
      const b = cpuSnapshot({ clients: process.pid, server: serverPid });
      const m = { rps: calls / ((performance.now() - t0) / 1000), ...cpuWindow(a, b, calls) };
      results.get(label).push(m);
      console.error(`round ${r} ${String(label).padEnd(10)} ${Math.round(m.rps)} req/s  CPU µs/call nats-server ${m.perCallUs.server} clients ${m.perCallUs.clients}`);
    }
  }
  console.log(`| ${what} | req/s | nats-server CPU µs/call | caller + responder CPU µs/call |`);
  console.log("| --- | ---: | ---: | ---: |");
  for (const [label, ms] of results) {
    console.log(`| ${label} | ${Math.round(median(ms.map((m) => m.rps)))} | ${median(ms.map((m) => m.perCallUs.server)).toFixed(1)} | ${median(ms.map((m) => m.perCallUs.clients)).toFixed(1)} |`);
  }
}

/**
 * A subscription callback that settles the call whose id a reply's first 4 bytes carry
 * (the responders echo the request body), as `closedLoop` sends them.
 */
export function answerer(pending) {
  return (_e, m) => {
    const id = new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0);
    pending.get(id)?.();
    pending.delete(id);
  };
}

/**
 * Closed-loop calls for `ms` with `inFlight` workers: each sends a 200-byte body whose
 * first 4 bytes are the call's id (`send(id, body)`) and waits for its answer
 * (`answerer(pending)`). Bounded in time and in count. Resolves to the calls made.
 */
export async function closedLoop({ inFlight, ms, pending, send }) {
  let seq = 0;
  let calls = 0;
  const end = performance.now() + ms;
  const worker = async () => {
    while (performance.now() < end && calls < ms * 1000) {
      const id = ++seq;
      const body = new Uint8Array(200); // nats.js may still hold the last one: a new one per call
      new DataView(body.buffer).setUint32(0, id);
      await new Promise((resolve) => {
        pending.set(id, resolve);
        send(id, body);
      });
      calls++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return calls;
}
