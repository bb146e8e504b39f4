// What the audit trail costs per call, and whether it keeps every record under load.
// The audit trail is on by default wherever the server has JetStream, but the bench's
// server has none, so run.mjs's rows never pay for it. Here caller and service run in
// this one process (in-process.mjs) on a private nats-server with JetStream (file
// storage in a temp dir), configurations taking turns round after round:
//   off  the core row (rows/svcmesh.mjs), audit off
//   on   the same with the audit trail on, as connect() sets it by default
//   window10s  audit on with a 10 s duplicate window (re-sends stop after 8 s) instead
//        of the default 20 minutes: what the window costs nats-server in memory
//
//   node bench/audit-cost.mjs [--rounds 5] [--ms 2000] [--inflight 256] [--configs off,on]
//
// After each "on" window the service closes, which waits for its backlog to be stored,
// and the SVC_AUDIT stream is counted against the calls that succeeded: every one of
// them reached the handler, so each must be stored exactly once. The stream is deleted
// after each window, so each configuration's stream settings apply. A line per round says stored, dropped and lost; the run
// exits 1 if any record is missing or doubled.
import { connect as natsConnect } from "nats";
import { readFileSync } from "node:fs";
import { measureWindow, printPairedTable, runOptions } from "./in-process.mjs";
import { startNatsServer } from "./nats-server.mjs";
import * as core from "./rows/svcmesh.mjs";

// The service logs a warning per dropped batch of records; the counts below say it all.
process.env.SVCMESH_LOG_LEVEL ??= "error";

const CONFIGS = {
  off: { enabled: false },
  // Close waits up to 60 s for the backlog (default 5 s): this run counts every record.
  on: { closeTimeoutMs: 60_000 },
  window10s: { closeTimeoutMs: 60_000, resendHorizonMs: 8_000, stream: { duplicateWindowMs: 10_000 } },
};
const { rounds, measureMs, inFlight, configs } = runOptions(CONFIGS, "off,on");

const STREAM = "SVC_AUDIT";

/** nats-server's resident memory in MB: JetStream remembers every message id for the stream's duplicate window. */
function serverRssMb() {
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${serverPid}/status`, "utf8"))?.[1]);
  return Math.round(kb / 1024);
}

async function measure(url, name, jsm) {
  const audit = CONFIGS[name];
  const service = await core.serve(url, { audit });
  const caller = await core.caller(url, {});
  const m = await measureWindow(caller.call, { serverPid, ms: measureMs, inFlight });
  await caller.close();
  const before = service.auditStats();
  const drainStart = performance.now();
  await service.close();
  const drainMs = performance.now() - drainStart;
  if (audit.enabled === false) return m;
  const stored = (await jsm.streams.info(STREAM)).state.messages;
  const rssMb = serverRssMb();
  await jsm.streams.delete(STREAM);
  return { ...m, audit: { stored, expected: m.allCalls, atEnd: before, drainMs, rssMb } };
}

const server = await startNatsServer({ jetstream: true });
const serverPid = server.pid;
const nc = await natsConnect({ servers: server.url });
const jsm = await nc.jetstreamManager();
const results = Object.fromEntries(configs.map((c) => [c, []]));
let missing = 0;
let storedInAll = 0;
console.error(`nats-server RSS at start: ${serverRssMb()} MB`);
try {
  for (let r = 1; r <= rounds; r++) {
    for (const c of configs) {
      const m = await measure(server.url, c, jsm);
      results[c].push(m);
      let line = `round ${r} ${c.padEnd(4)} ${Math.round(m.rps)} req/s  CPU µs/call mesh ${m.perCallUs.mesh} nats ${m.perCallUs.server}  others ${m.otherCores} cores${m.errors ? `  errors ${m.errors}` : ""}`;
      if (m.audit) {
        const { stored, expected, atEnd, drainMs, rssMb } = m.audit;
        missing += Math.abs(expected - stored);
        line += `  audit: ${stored} stored of ${expected} calls; when the load stopped: backlog ${atEnd.backlog}, dropped ${atEnd.dropped}, resent ${atEnd.resent}, lost ${atEnd.lost}; drained in ${Math.round(drainMs)} ms; nats-server RSS ${rssMb} MB after ${(storedInAll += stored)} records in all`;
      }
      console.error(line);
    }
  }
} finally {
  await nc.close();
  await server.stop();
}

printPairedTable(configs, results);
if (missing > 0) {
  console.error(`audit records missing or doubled: ${missing}`);
  process.exit(1);
}
