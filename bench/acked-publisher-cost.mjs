// What storing one message through svcmesh's acked publisher costs (the audit trail's
// and the mesh events' path to JetStream, jetstream/acked-publisher.ts), alone: no
// request, no handler. A private nats-server with JetStream; messages of ~200 bytes with
// request-id-like message ids, as many as the backlog allows in flight.
//
//   node bench/acked-publisher-cost.mjs [--records 200000] [--rounds 3] [DIR...]
//
// Each DIR is a checkout with a build (default: this one); with several, they take
// turns round by round, so before/after is one run (`git worktree add /tmp/old <commit>`,
// `pnpm install --offline`, `tsc -b` there first).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect } from "nats";
import { startNatsServer } from "./nats-server.mjs";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { records: { type: "string", default: "200000" }, rounds: { type: "string", default: "3" } } });
const records = Number(values.records);
const rounds = Number(values.rounds);
const builds = positionals.length > 0 ? positionals : [fileURLToPath(new URL("..", import.meta.url))];
const WARM_UP = 20_000;
const BODY = Buffer.alloc(200, 7);
// The publisher logs only trouble; a run that has any fails its stored count below.
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

const cpuMs = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // ticks of 10 ms
};

/** Publishes `count` messages, keeping at most 2,000 queued, and waits until all are acknowledged. */
async function publishAll(publisher, count, prefix) {
  let i = 0;
  while (i < count) {
    while (i < count && publisher.backlog() < 2000) publisher.publish("bench.acked.x", `${prefix}CVKRTNRUSIVTWFNWRMRT5L.r${i++}`, BODY);
    await new Promise(setImmediate);
  }
  while (publisher.backlog() > 0) await new Promise(setImmediate);
}

async function measure(build) {
  const { AckedPublisher } = await import(`${build}/packages/svcmesh/dist/jetstream/acked-publisher.js`);
  const server = await startNatsServer({ jetstream: true });
  const nc = await connect({ servers: server.url });
  try {
    await (await nc.jetstreamManager()).streams.add({ name: "ACKED_BENCH", subjects: ["bench.acked.>"] });
    const publisher = new AckedPublisher(nc, quiet, "_INBOX", {
      what: "bench message", maxBacklog: 10_000, maxInFlight: 256, ackTimeoutMs: 2_000, resendHorizonMs: 600_000,
      prepare: () => Promise.resolve(), onPrepareFailed: () => "retry", onReleased: () => {},
    });
    await publishAll(publisher, WARM_UP, "w");
    const cpu0 = process.cpuUsage();
    const server0 = cpuMs(server.pid);
    const t0 = performance.now();
    await publishAll(publisher, records, "m");
    const cpu = process.cpuUsage(cpu0);
    const stats = publisher.stats();
    if (stats.stored !== WARM_UP + records) throw new Error(`stored ${stats.stored} of ${WARM_UP + records}`);
    return { nodeUs: (cpu.user + cpu.system) / records, natsUs: ((cpuMs(server.pid) - server0) * 1000) / records, perSecond: records / ((performance.now() - t0) / 1000) };
  } finally {
    await nc.close();
    await server.stop();
  }
}

console.log("| build | round | node CPU µs per message | nats-server CPU µs per message | messages/s |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (let r = 1; r <= rounds; r++) {
  for (const build of builds) {
    const m = await measure(build);
    console.log(`| ${build} | ${r} | ${m.nodeUs.toFixed(2)} | ${m.natsUs.toFixed(2)} | ${Math.round(m.perSecond)} |`);
  }
}
