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
import { startNatsServer } from "./nats-server.mjs";
import { answerer, closedLoop, measureModes, rawBenchArgs } from "./raw-modes.mjs";

const { rounds, measureMs, inFlight } = rawBenchArgs();
const MODES = { new: Infinity, one: 1, "reuse 256": 256, "reuse 1024": 1024, "reuse 4096": 4096 };

const server = await startNatsServer();
const service = await connect({ servers: server.url, name: "bench-reply-subjects-service" });
service.subscribe("bench.reply.subjects", { queue: "q", callback: (_e, m) => service.publish(m.reply, m.data) });
await service.flush();
const nc = await connect({ servers: server.url, name: "bench-reply-subjects-caller" });

/** Calls for `ms`; replies go to one of `subjects` reply subjects (Infinity: a new one per call). */
async function run(subjects, ms) {
  const inbox = createInbox();
  const pending = new Map();
  // The correlation id travels in the body's first 4 bytes, whatever the subject says.
  const sub = nc.subscribe(subjects === 1 ? inbox : `${inbox}.*`, { callback: answerer(pending) });
  await nc.flush();
  const calls = await closedLoop({
    inFlight,
    ms,
    pending,
    send: (id, body) => nc.publish("bench.reply.subjects", body, { reply: subjects === 1 ? inbox : `${inbox}.${subjects === Infinity ? id : id % subjects}` }),
  });
  sub.unsubscribe();
  return calls;
}

try {
  await measureModes({ what: `reply subjects (${inFlight} in flight)`, modes: Object.entries(MODES), rounds, measureMs, serverPid: server.pid, run });
} finally {
  await nc.close();
  await service.close();
  await server.stop();
}
