#!/usr/bin/env node
// A one-shot client for a mesh whose services run elsewhere (the Docker compose demo):
// waits until auth, claims and the expected number of payments instances answer
// discovery, submits the claims of the story, prints the outcome, exits 0 when the
// story went as scripted and every expected payments instance paid some.
//
//   NATS_URL                       server URL or comma-separated cluster list
//   SVCMESH_DEMO_EXPECT_PAYMENTS   payments instances that must share the load (default 1)
//   SVCMESH_DEMO_WAIT_MS           how long to wait for NATS and the services (default 60000)
import { pino } from "pino";
import { DEFAULT_SERVER, type Mesh } from "svcmesh";
import { envInt, poll, withTimeout } from "./bounded.js";
import { CLAIMS_TARGET } from "./claims.js";
import { connectWithRetry } from "./connect-retry.js";
import { natsServers } from "./nats-url.js";
import { formatOutcomes, formatServed, type LabelOf } from "./report.js";
import { deviations, runStory } from "./story.js";

const say = (line = "") => process.stdout.write(line + "\n");

/**
 * Distinct instances of a service answering $SRV.INFO (the NATS services protocol: the
 * discovery subject a generated broker config grants for the services one may call), or
 * "hidden" when the server's permissions do not let this client look it up.
 */
async function instancesOf(mesh: Mesh, service: string): Promise<number | "hidden"> {
  const ids = new Set<string>();
  try {
    for await (const info of await mesh.nc.services.client().info(service)) ids.add(info.id);
  } catch (e) {
    if ((e as { code?: unknown }).code === "PERMISSIONS_VIOLATION") return "hidden";
    // otherwise no responders: nobody runs it yet
  }
  return ids.size;
}

async function main(): Promise<number> {
  const expectPayments = envInt("SVCMESH_DEMO_EXPECT_PAYMENTS", 1);
  const waitMs = envInt("SVCMESH_DEMO_WAIT_MS", 60_000);
  const servers = natsServers(process.env.NATS_URL) ?? [DEFAULT_SERVER];
  const logger = pino({ name: "demo-client", level: process.env.SVCMESH_LOG_LEVEL ?? "warn" }, pino.destination(2));
  const started = Date.now();
  const mesh = await connectWithRetry({ servers, name: "demo-client", logger, waitMs });
  try {
    say(`connected to ${servers.join(",")}`);
    const want: [string, number][] = [["auth", 1], ["claims", 1], ["payments", expectPayments]];
    for (const [service, n] of want) {
      const left = Math.max(1_000, waitMs - (Date.now() - started));
      const found = await poll(`waiting for ${n} instance(s) of ${service}`, left, 500, async () => {
        const have = await instancesOf(mesh, service);
        return have === "hidden" || have >= n ? have : undefined;
      });
      say(found === "hidden" ? `cannot look up ${service} (the NATS server's permissions do not allow it); not waiting for it` : `found ${found} instance(s) of ${service}`);
    }

    const labelOf: LabelOf = (p) => `${p.host} (pid ${p.pid})`;
    say();
    say(`submitting claims to ${CLAIMS_TARGET}, one at a time:`);
    say();
    const result = await runStory(mesh, { enoughServed: (served) => served.size >= expectPayments });
    for (const line of formatOutcomes(result.outcomes, labelOf)) say(`  ${line}`);
    say();
    for (const line of formatServed(result, labelOf)) say(line);
    say();
    const problems = deviations(result);
    if (result.served.size < expectPayments) problems.push(`only ${result.served.size} of ${expectPayments} payments instances paid any claim`);
    if (problems.length) {
      process.stderr.write(`the story did not go as scripted:\n  ${problems.join("\n  ")}\n`);
      return 1;
    }
    say("done.");
    return 0;
  } finally {
    await withTimeout(mesh.close(), 5_000, "closing the connection").catch(() => undefined);
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo client failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
