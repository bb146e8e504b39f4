// How long a policy change takes to reach every running instance.
//
//   node bench/policy-propagation.mjs [--instances 10] [--changes 20] [--pause-ms 100]
//
// Starts its own nats-server with JetStream (temp store, removed at the end), applies a
// first policy (creating the svcmesh_policies bucket, so no instance waits on the
// watcher's "no bucket yet" backoff), starts N service instances as N separate
// processes (bench/policy-instance.mjs: connect() with an nkey seed, the default live
// watch, serving payments), then applies M policy changes one after the other with
// applyPolicy(). For each change it measures the time from just before applyPolicy()
// is called until the last of the N instances has put the new revision in force
// (each instance stamps the moment with performance.timeOrigin + performance.now(),
// hooked on mesh.policy.onChange, and reports it over IPC). The next change is applied
// only once all N have it, after a short pause. Every wait is bounded; everything
// started is killed at the end, also on error or Ctrl-C.
import { connect as natsConnect } from "nats";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { applyPolicy } from "svcmesh";
import { forkChild, killAll, nextMessage, exited } from "./children.mjs";
import { benchPolicyText } from "./policy-document.mjs";
import { machine, svcmeshBuild } from "./machine.mjs";
import { startNatsServer } from "./nats-server.mjs";

const { values } = parseArgs({
  options: {
    instances: { type: "string", default: "10" },
    changes: { type: "string", default: "20" },
    "pause-ms": { type: "string", default: "100" },
  },
});
const INSTANCES = Number(values.instances);
const CHANGES = Number(values.changes);
const PAUSE_MS = Number(values["pause-ms"]);
for (const [k, v] of [["instances", INSTANCES], ["changes", CHANGES]]) {
  if (!Number.isInteger(v) || v < 1 || v > 1000) throw new Error(`--${k} must be an integer 1..1000`);
}
const START_TIMEOUT_MS = 30_000;
/** A change that has not reached every instance within this is reported as lost. */
const CHANGE_TIMEOUT_MS = 5_000;

const now = () => performance.timeOrigin + performance.now();
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const ms = (x) => x.toFixed(1);

let server;
let nc;
const cleanup = async () => {
  await Promise.race([Promise.all([killAll(), nc?.close().catch(() => undefined), server?.stop()]), sleep(5_000)]);
};
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, async () => {
    await cleanup();
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

async function main() {
  const host = { ...machine(), svcmeshBuild: svcmeshBuild() };
  server = await startNatsServer({ jetstream: true });
  nc = await natsConnect({ servers: server.url, name: "bench-operator" });
  const first = await applyPolicy(nc, benchPolicyText(), { by: "bench" });
  console.error(`nats-server pid ${server.pid} at ${server.url} (JetStream); svcmesh build ${host.svcmeshBuild} (commit ${host.commit}); ` +
    `first policy at revision ${first.revision}; starting ${INSTANCES} instances`);

  // Latest report of each instance: revision → time it came into force there.
  const seen = Array.from({ length: INSTANCES }, () => new Map());
  let wake = () => {};
  const children = [];
  for (let i = 0; i < INSTANCES; i++) {
    const child = forkChild("policy-instance.mjs", [server.url, String(i)]);
    child.on("message", (m) => {
      if (m && typeof m.revision === "number") {
        if (!seen[i].has(m.revision)) seen[i].set(m.revision, m.at);
        wake();
      }
    });
    children.push(child);
  }
  const ready = await Promise.all(children.map((c) => nextMessage(c, "ready", START_TIMEOUT_MS)));
  const notFollowing = ready.filter((r) => r.ready.revision !== first.revision).length;
  if (notFollowing) throw new Error(`${notFollowing} instance(s) did not have revision ${first.revision} in force after connect()`);
  await sleep(500); // let the instances settle (discovery, first heartbeats)

  const results = [];
  for (let n = 1; n <= CHANGES; n++) {
    const t0 = now();
    const applied = await applyPolicy(nc, benchPolicyText({ variant: n }), { by: "bench" });
    const tAck = now();
    const deadline = t0 + CHANGE_TIMEOUT_MS;
    const all = () => seen.every((s) => s.has(applied.revision));
    while (!all() && now() < deadline) {
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.max(1, deadline - now())).unref();
      });
    }
    const times = seen.map((s) => s.get(applied.revision));
    const missing = times.filter((t) => t === undefined).length;
    const arrived = times.filter((t) => t !== undefined).map((t) => t - t0);
    const r = {
      change: n,
      revision: applied.revision,
      ackMs: tAck - t0,
      firstMs: Math.min(...arrived),
      allMs: missing ? Infinity : Math.max(...arrived),
      missing,
    };
    results.push(r);
    console.error(`change ${String(n).padStart(2)} rev ${r.revision}: put acked ${ms(r.ackMs)} ms; first instance ${ms(r.firstMs)} ms; ` +
      (missing ? `${missing} instance(s) still without it after ${CHANGE_TIMEOUT_MS} ms` : `all ${INSTANCES} ${ms(r.allMs)} ms`));
    await sleep(PAUSE_MS);
  }

  await Promise.all(children.map(async (c) => {
    if (c.connected) c.send("stop");
    await exited(c, 5_000);
  }));

  const all = results.map((r) => r.allMs).sort((a, b) => a - b);
  const first1 = results.map((r) => r.firstMs).sort((a, b) => a - b);
  const acks = results.map((r) => r.ackMs).sort((a, b) => a - b);
  const lost = results.filter((r) => r.missing).length;
  console.log(`policy propagation to ${INSTANCES} instances (separate processes), ${CHANGES} changes, ${new Date().toISOString()}`);
  console.log(`  apply → in force at ALL ${INSTANCES}: median ${ms(pct(all, 50))} ms, p90 ${ms(pct(all, 90))} ms, ` +
    `p99 ${ms(pct(all, 99))} ms, max ${ms(all.at(-1))} ms, min ${ms(all[0])} ms` + (lost ? `; ${lost} change(s) never reached all` : ""));
  console.log(`  apply → in force at the first instance: median ${ms(pct(first1, 50))} ms, max ${ms(first1.at(-1))} ms`);
  console.log(`  apply → KV put acknowledged:            median ${ms(pct(acks, 50))} ms, max ${ms(acks.at(-1))} ms`);
  if (lost) process.exitCode = 1;
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(cleanup);
