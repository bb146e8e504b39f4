// What the audit trail costs per call, and whether it keeps every record under load.
// The audit trail is on by default wherever the server has JetStream, but the bench's
// server has none, so run.mjs's rows never pay for it. Here caller and service run in
// this one process (in-process.mjs) on a private nats-server with JetStream (file
// storage in a temp dir), configurations taking turns round after round:
//   off  the core row (rows/svcmesh.mjs), audit off
//   on   the same with the audit trail on, as connect() sets it by default
//   window10s  audit on with a 10 s duplicate window (re-sends stop after 5 s) instead
//        of the default 20 minutes: what the window costs nats-server in memory
//   r3   audit on with the stream replicated 3 times, as a cluster should keep it
//        (with --cluster only)
//   r3refuse  the same, failing closed (audit.whenFull "refuse"): calls are refused
//        while the backlog is full, and no record of a call that ran is dropped
//
//   node bench/audit-cost.mjs [--rounds 5] [--ms 2000] [--inflight 256] [--configs off,on]
//   node --import tsx bench/audit-cost.mjs --cluster [--configs off,on,r3]
//
// --cluster runs on a 3-node cluster on loopback (test/helpers/cluster.ts, hence tsx),
// caller and service connected to the first node; nats-server's CPU is the three
// nodes' together.
//
// After each "on" window the service closes, which waits for its backlog to be stored,
// and the SVC_AUDIT stream is counted against the calls that succeeded: every one of
// them reached the handler, so each must be stored exactly once, or be counted dropped
// (the writer's backlog was full; audit.whenFull "drop", the default). The stream is
// deleted after each window, so each configuration's stream settings apply. A line per
// round says stored, dropped and lost; the run ends with the records dropped, and exits
// 1 if any record is neither stored nor counted, or stored twice.
import { connect as natsConnect } from "nats";
import { rssMb } from "./cpu.mjs";
import { measureWindow, printPairedTable, runOptions } from "./in-process.mjs";
import { startNatsServer } from "./nats-server.mjs";
import * as core from "./rows/svcmesh.mjs";

// The service logs a warning per dropped batch of records; the counts below say it all.
process.env.SVCMESH_LOG_LEVEL ??= "error";

const CONFIGS = {
  off: { enabled: false },
  // Close waits up to 60 s for the backlog (default 5 s): this run counts every record.
  on: { closeTimeoutMs: 60_000 },
  window10s: { closeTimeoutMs: 60_000, resendHorizonMs: 5_000, stream: { duplicateWindowMs: 10_000 } },
  r3: { closeTimeoutMs: 60_000, stream: { replicas: 3 } },
  r3refuse: { closeTimeoutMs: 60_000, stream: { replicas: 3 }, whenFull: "refuse" },
};
const { rounds, measureMs, inFlight, configs, cluster: onCluster } = runOptions(CONFIGS, "off,on", { cluster: { type: "boolean", default: false } });
if (configs.some((c) => c.startsWith("r3")) && !onCluster) throw new Error("configs r3 and r3refuse need --cluster");

const STREAM = "SVC_AUDIT";

/** nats-server's resident memory in MB (all nodes): JetStream remembers every message id for the stream's duplicate window. */
const serverRssMb = () => rssMb(serverPids);

/** One nats-server, or a 3-node cluster with JetStream ready: { url, pids, stop }. */
async function startServers() {
  if (!onCluster) {
    const server = await startNatsServer({ jetstream: true });
    return { url: server.url, pids: [server.pid], stop: () => server.stop() };
  }
  const { startCluster } = await import("../test/helpers/cluster.ts").catch((e) => {
    throw new Error(`--cluster loads the tests' cluster helper (TypeScript): run it as node --import tsx bench/audit-cost.mjs --cluster (${e.message})`);
  });
  const cluster = await startCluster();
  await cluster.jetStreamReady();
  return { url: cluster.urls[0], pids: cluster.nodes.map((n) => n.pid), stop: () => cluster.stopAll() };
}

async function measure(url, name, jsm) {
  const audit = CONFIGS[name];
  const service = await core.serve(url, { audit });
  const caller = await core.caller(url, {});
  const m = await measureWindow(caller.call, { serverPid: serverPids, ms: measureMs, inFlight });
  await caller.close();
  const before = service.auditStats();
  const drainStart = performance.now();
  await service.close();
  const drainMs = performance.now() - drainStart;
  const dropped = audit.enabled === false ? 0 : service.auditStats().dropped;
  if (audit.enabled === false) return m;
  const stored = (await jsm.streams.info(STREAM)).state.messages;
  const serverMb = serverRssMb();
  await jsm.streams.delete(STREAM);
  return { ...m, audit: { stored, expected: m.allCalls, dropped, atEnd: before, drainMs, rssMb: serverMb } };
}

const server = await startServers();
const serverPids = server.pids;
const nc = await natsConnect({ servers: server.url });
const jsm = await nc.jetstreamManager();
const results = Object.fromEntries(configs.map((c) => [c, []]));
let unaccounted = 0;
let droppedInAll = 0;
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
        // Dropped records are counted by the writer until the service closes.
        const dropped = m.audit.dropped;
        droppedInAll += dropped;
        unaccounted += Math.abs(expected - stored - dropped);
        line += `  audit: ${stored} stored of ${expected} calls, ${m.audit.dropped} dropped; when the load stopped: backlog ${atEnd.backlog}, dropped ${atEnd.dropped}, resent ${atEnd.resent}, lost ${atEnd.lost}; drained in ${Math.round(drainMs)} ms; nats-server RSS ${rssMb} MB after ${(storedInAll += stored)} records in all`;
      }
      console.error(line);
    }
  }
} finally {
  await nc.close();
  await server.stop();
}

printPairedTable(configs, results);
if (droppedInAll > 0) console.error(`audit records dropped (counted by the writer, its backlog full): ${droppedInAll}`);
if (unaccounted > 0) {
  console.error(`audit records neither stored nor counted, or stored twice: ${unaccounted}`);
  process.exit(1);
}
