// What a reply subject per call costs nats-server, against reply subjects reused: raw
// nats.js only (one responder, one caller, this process), so the figure is the server's
// and not svcmesh's. It is why the transport reuses answered reply tokens
// (packages/svcmesh/src/client/transport.ts): nats-server caches subject lookups per
// connection (512 entries), and a new subject per reply misses that cache every time.
//
//   node bench/reply-subjects.mjs [--rounds 3] [--ms 1500] [--inflight 256]
//
// Modes: "new" (a new token per call, as nc.request's muxed inbox does), "one" (a single
// reply subject, the correlation id in the body) and "reuse N" (tokens cycled over N
// subjects). Rounds interleave the modes; read the medians.
import { connect, createInbox } from "nats";
import { parseArgs } from "node:util";
import { cpuSnapshot, cpuWindow } from "./cpu.mjs";
import { startNatsServer } from "./nats-server.mjs";
import { median } from "./summary.mjs";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, ms: { type: "string", default: "1500" }, inflight: { type: "string", default: "256" } } });
const rounds = Number(values.rounds);
const measureMs = Number(values.ms);
const inFlight = Number(values.inflight);
const MODES = { new: Infinity, one: 1, "reuse 256": 256, "reuse 1024": 1024, "reuse 4096": 4096 };

const server = await startNatsServer();
const service = await connect({ servers: server.url, name: "bench-reply-subjects-service" });
service.subscribe("bench.reply.subjects", { queue: "q", callback: (_e, m) => service.publish(m.reply, m.data) });
await service.flush();
const nc = await connect({ servers: server.url, name: "bench-reply-subjects-caller" });

/** Calls for `ms` with `inFlight` workers; replies go to one of `subjects` reply subjects (Infinity: a new one per call). */
async function run(subjects, ms) {
  const inbox = createInbox();
  const pending = new Map();
  let seq = 0;
  let calls = 0;
  // The correlation id travels in the body's first 4 bytes, whatever the subject says.
  const sub = nc.subscribe(subjects === 1 ? inbox : `${inbox}.*`, {
    callback: (_e, m) => {
      const id = new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0);
      pending.get(id)?.();
      pending.delete(id);
    },
  });
  await nc.flush();
  const end = performance.now() + ms;
  const worker = async () => {
    while (performance.now() < end && calls < ms * 1000) {
      const id = ++seq;
      const body = new Uint8Array(200); // nats.js may still hold the last one: a new one per call
      new DataView(body.buffer).setUint32(0, id);
      const reply = subjects === 1 ? inbox : `${inbox}.${subjects === Infinity ? id : id % subjects}`;
      await new Promise((resolve) => {
        pending.set(id, resolve);
        nc.publish("bench.reply.subjects", body, { reply });
      });
      calls++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  sub.unsubscribe();
  return calls;
}

const results = Object.fromEntries(Object.keys(MODES).map((m) => [m, []]));
try {
  for (let r = 1; r <= rounds; r++) {
    for (const [mode, subjects] of Object.entries(MODES)) {
      await run(subjects, 300); // warm-up
      const a = cpuSnapshot({ clients: process.pid, server: server.pid });
      const t0 = performance.now();
      const calls = await run(subjects, measureMs);
      const b = cpuSnapshot({ clients: process.pid, server: server.pid });
      const m = { rps: calls / ((performance.now() - t0) / 1000), ...cpuWindow(a, b, calls) };
      results[mode].push(m);
      console.error(`round ${r} ${mode.padEnd(10)} ${Math.round(m.rps)} req/s  CPU µs/call nats-server ${m.perCallUs.server} clients ${m.perCallUs.clients}`);
    }
  }
} finally {
  await nc.close();
  await service.close();
  await server.stop();
}

console.log(`| reply subjects (${inFlight} in flight) | req/s | nats-server CPU µs/call | caller + responder CPU µs/call |`);
console.log("| --- | ---: | ---: | ---: |");
for (const [mode, ms] of Object.entries(results)) {
  console.log(`| ${mode} | ${Math.round(median(ms.map((m) => m.rps)))} | ${median(ms.map((m) => m.perCallUs.server)).toFixed(1)} | ${median(ms.map((m) => m.perCallUs.clients)).toFixed(1)} |`);
}
