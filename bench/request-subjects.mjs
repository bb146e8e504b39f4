// What spreading requests over many subjects costs nats-server, with raw nats.js only
// (one responder connection subscribed to N subjects in a queue group each, as one
// process serving N services is; one caller; replies on one subject, the correlation id
// in the body). The "services 1 → 200" scale rows spread svcmesh calls the same way;
// this says how much of their cost is the server's own, whatever library sits on top.
//
//   node bench/request-subjects.mjs [--rounds 3] [--ms 1500] [--inflight 256]
//
// Modes: 1, 50 and 200 request subjects, calls taking turns over them; rounds
// interleave the modes: read the medians.
import { connect, createInbox } from "nats";
import { parseArgs } from "node:util";
import { cpuSnapshot, cpuWindow } from "./cpu.mjs";
import { startNatsServer } from "./nats-server.mjs";
import { median } from "./summary.mjs";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, ms: { type: "string", default: "1500" }, inflight: { type: "string", default: "256" } } });
const rounds = Number(values.rounds);
const measureMs = Number(values.ms);
const inFlight = Number(values.inflight);
if (![rounds, measureMs, inFlight].every((n) => Number.isInteger(n) && n > 0)) throw new Error("--rounds, --ms and --inflight must be positive whole numbers");
const MODES = [1, 50, 200];
const subjectOf = (i) => `bench.request.subjects.s${i}.reimburse`;

const server = await startNatsServer();
const service = await connect({ servers: server.url, name: "bench-request-subjects-service" });
for (let i = 0; i < Math.max(...MODES); i++) service.subscribe(subjectOf(i), { queue: "q", callback: (_e, m) => service.publish(m.reply, m.data) });
await service.flush();
const nc = await connect({ servers: server.url, name: "bench-request-subjects-caller" });
const inbox = createInbox();
const pending = new Map();
nc.subscribe(inbox, {
  callback: (_e, m) => {
    const id = new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0);
    pending.get(id)?.();
    pending.delete(id);
  },
});
await nc.flush();

/** Calls for `ms` with `inFlight` workers, taking turns over `subjects` request subjects. */
async function run(subjects, ms) {
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
        nc.publish(subjectOf(id % subjects), body, { reply: inbox });
      });
      calls++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return calls;
}

const results = new Map(MODES.map((m) => [m, []]));
try {
  for (let r = 1; r <= rounds; r++) {
    for (const subjects of MODES) {
      await run(subjects, 300); // warm-up
      const a = cpuSnapshot({ clients: process.pid, server: server.pid });
      const t0 = performance.now();
      const calls = await run(subjects, measureMs);
      const b = cpuSnapshot({ clients: process.pid, server: server.pid });
      const m = { rps: calls / ((performance.now() - t0) / 1000), ...cpuWindow(a, b, calls) };
      results.get(subjects).push(m);
      console.error(`round ${r} ${String(subjects).padStart(3)} subjects ${Math.round(m.rps)} req/s  CPU µs/call nats-server ${m.perCallUs.server} clients ${m.perCallUs.clients}`);
    }
  }
} finally {
  await nc.close();
  await service.close();
  await server.stop();
}

console.log(`| request subjects (${inFlight} in flight) | req/s | nats-server CPU µs/call | caller + responder CPU µs/call |`);
console.log("| ---: | ---: | ---: | ---: |");
for (const [subjects, ms] of results) {
  console.log(`| ${subjects} | ${Math.round(median(ms.map((m) => m.rps)))} | ${median(ms.map((m) => m.perCallUs.server)).toFixed(1)} | ${median(ms.map((m) => m.perCallUs.clients)).toFixed(1)} |`);
}
