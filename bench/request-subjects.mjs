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
import { startNatsServer } from "./nats-server.mjs";
import { answerer, closedLoop, measureModes, rawBenchArgs } from "./raw-modes.mjs";

const { rounds, measureMs, inFlight } = rawBenchArgs();
const MODES = [1, 50, 200];
const subjectOf = (i) => `bench.request.subjects.s${i}.reimburse`;

const server = await startNatsServer();
const service = await connect({ servers: server.url, name: "bench-request-subjects-service" });
for (let i = 0; i < Math.max(...MODES); i++) service.subscribe(subjectOf(i), { queue: "q", callback: (_e, m) => service.publish(m.reply, m.data) });
await service.flush();
const nc = await connect({ servers: server.url, name: "bench-request-subjects-caller" });
const inbox = createInbox();
const pending = new Map();
nc.subscribe(inbox, { callback: answerer(pending) });
await nc.flush();

/** Calls for `ms`, taking turns over `subjects` request subjects. */
const run = (subjects, ms) => closedLoop({ inFlight, ms, pending, send: (id, body) => nc.publish(subjectOf(id % subjects), body, { reply: inbox }) });

try {
  const modes = MODES.map((n) => [n, n]);
  await measureModes({ what: `request subjects (${inFlight} in flight)`, modes, rounds, measureMs, serverPid: server.pid, run });
} finally {
  await nc.close();
  await service.close();
  await server.stop();
}
