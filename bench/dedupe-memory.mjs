// What JetStream's duplicate window costs nats-server in memory: it remembers every
// message id it stored until the window has passed, purged or not. The audit trail
// (svc.audit.<service>, a record per handled call with the request id as message id)
// keeps a 20-minute window by default, so at a steady rate nats-server holds
// rate × 20 min ids. This stores `--records` messages twice, with a purge and a pause
// in between, once per window: with the long window the second batch's ids add to the
// first's; with a window shorter than the pause the first batch's ids are gone by then.
//
//   node bench/dedupe-memory.mjs [--records 300000] [--pause-ms 8000]
import { connect, headers, nanos } from "nats";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { rssMb } from "./cpu.mjs";
import { startNatsServer } from "./nats-server.mjs";

const { values } = parseArgs({ options: { records: { type: "string", default: "300000" }, "pause-ms": { type: "string", default: "8000" } } });
const records = Number(values.records);
const pauseMs = Number(values["pause-ms"]);
const IN_FLIGHT = 256;
const body = new Uint8Array(200).fill(7); // about an audit record's size

/** Stores `n` messages with fresh ids, IN_FLIGHT publishes awaiting their ack at a time. */
async function store(js, subject, n, prefix) {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const h = headers();
      h.set("Nats-Msg-Id", `${prefix}-${next++}`);
      await js.publish(subject, body, { headers: h });
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

console.log("| duplicate window | nats-server RSS MB: start | after the first batch | after the purge, the pause and the second batch |");
console.log("| --- | ---: | ---: | ---: |");
for (const [label, windowMs] of [["20 min (the audit default)", 20 * 60_000], [`${pauseMs / 2000} s`, pauseMs / 2]]) {
  const server = await startNatsServer({ jetstream: true });
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: "DEDUPE_BENCH", subjects: ["dedupe.bench"], duplicate_window: nanos(windowMs) });
    const js = nc.jetstream();
    const start = rssMb(server.pid);
    await store(js, "dedupe.bench", records, "a");
    const first = rssMb(server.pid);
    await jsm.streams.purge("DEDUPE_BENCH");
    await sleep(pauseMs);
    await store(js, "dedupe.bench", records, "b");
    const second = rssMb(server.pid);
    console.log(`| ${label} | ${start} | ${first} | ${second} |`);
  } finally {
    await nc.close();
    await server.stop();
  }
}
