#!/usr/bin/env node
// `pnpm demo`: the lost-package claim story on a real mesh.
//
// Finds NATS (NATS_URL; else a server on 127.0.0.1:4222, the port probed being
// SVCMESH_DEMO_PORT_CHECK; else a nats-server it starts itself), runs auth, claims and
// two payments instances as child processes, submits claims, prints what happened and
// which payments instance paid each claim, then stops everything it started.
// Exit 0 when the story went as scripted and both payments instances took a share;
// otherwise non-zero with the reason. Every wait is bounded.
import { pino } from "pino";
import { connect, type Mesh } from "svcmesh";
import { envInt, formatMs, withTimeout } from "./bounded.js";
import { type ServiceName } from "./catalog.js";
import { ServiceProcess, type StopResult } from "./children.js";
import { CLAIMS_TARGET } from "./claims.js";
import { type NatsEndpoint, NatsServerMissing, findNats } from "./local-nats.js";
import { natsServers } from "./nats-url.js";
import type { ReadyMessage } from "./protocol.js";
import { formatOutcomes, formatServed, type LabelOf } from "./report.js";
import { deviations, runStory } from "./story.js";

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 10_000;

const CHILDREN: readonly { label: string; service: ServiceName }[] = [
  { label: "auth", service: "auth" },
  { label: "claims", service: "claims" },
  { label: "payments-1", service: "payments" },
  { label: "payments-2", service: "payments" },
];

const say = (line = "") => process.stdout.write(line + "\n");

let nats: NatsEndpoint | undefined;
let mesh: Mesh | undefined;
const fleet: ServiceProcess[] = [];
let finishing = false;

/** Closes our connection, stops the children (claims first, so no new work fans out), then the server we started. */
async function tearDown(): Promise<StopResult[]> {
  if (mesh) await withTimeout(mesh.close(), 5_000, "closing the demo's connection").catch(() => undefined);
  const byLabel = (l: string) => fleet.filter((c) => c.label === l);
  const results = await Promise.all(byLabel("claims").map((c) => c.stop(STOP_GRACE_MS)));
  results.push(...(await Promise.all(fleet.filter((c) => c.label !== "claims").map((c) => c.stop(STOP_GRACE_MS)))));
  if (nats) await nats.stop();
  return results;
}

async function fail(e: unknown, exitCode = 1): Promise<never> {
  if (finishing) return new Promise<never>(() => undefined); // the first failure reports and exits
  finishing = true;
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`\ndemo failed: ${message}\n`);
  if (!(e instanceof NatsServerMissing)) {
    for (const c of fleet) {
      const tail = c.tail().slice(-15);
      if (tail.length) process.stderr.write(`\n--- last output of ${c.label} (pid ${c.pid ?? "?"}) ---\n${tail.join("\n")}\n`);
    }
  }
  await withTimeout(tearDown(), STOP_GRACE_MS + 10_000, "cleaning up").catch((err: unknown) => {
    process.stderr.write(`cleanup incomplete: ${(err as Error).message}\n`);
    for (const c of fleet) if (c.proc.exitCode === null) c.proc.kill("SIGKILL");
  });
  process.exit(exitCode);
}

async function main(): Promise<void> {
  const overallMs = envInt("SVCMESH_DEMO_TIMEOUT_MS", 120_000);
  // Not unref()ed: the demo ends through process.exit on every path, or through this.
  setTimeout(() => void fail(new Error(`the demo did not finish within ${formatMs(overallMs)}`)), overallMs);

  say("svcmesh demo: lost-package claims  (client → claims → auth, payments)");
  say();
  nats = await findNats();
  say(`NATS: ${nats.url}  (${nats.origin})`);

  const servers = natsServers(nats.url)!;
  const logger = pino({ name: "demo", level: process.env.SVCMESH_LOG_LEVEL ?? "warn" }, pino.destination(2));
  mesh = await withTimeout(connect({ servers, name: "demo-client", logger }), 10_000, `connecting to NATS at ${nats.url}`);

  const childDied = new Promise<never>((_, reject) => {
    const env = { ...process.env, NATS_URL: nats!.url, SVCMESH_CONNECT_WAIT_MS: "5000" };
    for (const { label, service } of CHILDREN) {
      const child = new ServiceProcess(label, service, env);
      child.watch(reject);
      fleet.push(child);
    }
  });
  childDied.catch(() => undefined);
  const orDeath = <T>(p: Promise<T>) => Promise.race([p, childDied]);

  const ready = await orDeath(Promise.all(fleet.map((c) => withTimeout(c.ready, READY_TIMEOUT_MS, `${c.label} becoming ready`))));
  const labels = new Map<string, string>();
  ready.forEach((r: ReadyMessage, i) => {
    const c = fleet[i]!;
    labels.set(r.instance, c.label);
    say(`started ${c.label.padEnd(10)}  ${`${r.service}@${r.version}`.padEnd(15)}  pid ${String(r.pid).padEnd(7)}  instance ${r.instance}`);
  });
  const ours = fleet.filter((c) => c.service === "payments").map((c) => ({ label: c.label, instance: ready[fleet.indexOf(c)]!.instance }));
  const labelOf: LabelOf = (p) => labels.get(p.instance) ?? `other instance ${p.instance} (${p.host}, pid ${p.pid}), not started by this demo`;

  say();
  say(`submitting claims to ${CLAIMS_TARGET}, one at a time:`);
  say();
  const result = await orDeath(runStory(mesh, { enoughServed: (served) => ours.every((o) => (served.get(o.instance)?.count ?? 0) > 0) }));
  for (const line of formatOutcomes(result.outcomes, labelOf)) say(`  ${line}`);
  say();
  for (const line of formatServed(result, labelOf)) say(line);
  say();

  const problems = deviations(result);
  for (const o of ours) {
    if (!result.served.get(o.instance)?.count) problems.push(`${o.label} paid no claim out of ${result.outcomes.length + result.burstClaims}: the load is not being shared`);
  }
  if (problems.length) throw new Error(`the story did not go as scripted:\n  ${problems.join("\n  ")}`);

  finishing = true; // from here on a child exiting is expected
  say(`stopping ${fleet.map((c) => c.label).join(", ")}${nats.origin.includes("started by the demo") ? " and the nats-server" : ""}`);
  let stopped: StopResult[];
  try {
    stopped = await withTimeout(tearDown(), STOP_GRACE_MS + 10_000, "stopping everything");
  } catch (e) {
    process.stderr.write(`demo failed while stopping: ${(e as Error).message}\n`);
    for (const c of fleet) if (c.proc.exitCode === null) c.proc.kill("SIGKILL");
    process.exit(1);
  }
  const unclean = stopped.filter((s) => !s.clean);
  for (const s of unclean) process.stderr.write(`${s.label} did not stop cleanly: ${s.detail}\n`);
  if (unclean.length) process.exit(1);
  say("all stopped cleanly; done.");
  process.exit(0);
}

process.on("SIGINT", () => void fail(new Error("interrupted (SIGINT)"), 130));
process.on("SIGTERM", () => void fail(new Error("terminated (SIGTERM)"), 143));
main().catch((e: unknown) => fail(e));
