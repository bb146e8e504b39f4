#!/usr/bin/env node
// Runs ONE example service as its own process: `node dist/service.js payments`.
//
//   NATS_URL                  server URL, or a comma-separated cluster list (default nats://127.0.0.1:4222)
//   SVCMESH_CONNECT_WAIT_MS   how long to keep trying the first connection (default 30000),
//                             so containers may start before the NATS cluster is up
//   SVCMESH_STOP_TIMEOUT_MS   how long a graceful stop may take before it gives up (default 10000)
//   SVCMESH_LOG_LEVEL         pino level (default info)
//
// Logs one "ready" line when it takes requests (and, when started with an IPC channel,
// sends a ReadyMessage). SIGTERM/SIGINT stop it gracefully: svc.stop() drains in-flight
// requests, then mesh.close(); exit code 0. A second signal exits at once with 1.
import { DEFAULT_SERVER, type Mesh, type ServiceHandle } from "svcmesh";
import { pino } from "pino";
import { envInt, withTimeout } from "./bounded.js";
import { catalog, isServiceName, serviceNames } from "./catalog.js";
import { connectWithRetry } from "./connect-retry.js";
import { natsServers } from "./nats-url.js";
import type { ReadyMessage } from "./protocol.js";

const name = process.argv[2] ?? "";
if (!isServiceName(name)) {
  process.stderr.write(`usage: node service.js <${serviceNames.join("|")}>\n` + (name ? `unknown service ${JSON.stringify(name)}\n` : ""));
  process.exit(2);
}

const logger = pino({ name, level: process.env.SVCMESH_LOG_LEVEL ?? "info" });
let connectWaitMs: number;
let stopTimeoutMs: number;
try {
  connectWaitMs = envInt("SVCMESH_CONNECT_WAIT_MS", 30_000);
  stopTimeoutMs = envInt("SVCMESH_STOP_TIMEOUT_MS", 10_000);
} catch (e) {
  logger.fatal((e as Error).message);
  process.exit(2);
}
const servers = natsServers(process.env.NATS_URL) ?? [DEFAULT_SERVER];

let mesh: Mesh | undefined;
let svc: ServiceHandle | undefined;
let stopping = false;

function stop(why: string): void {
  if (stopping) {
    logger.warn({ why }, "stopping again: exiting now");
    process.exit(1);
  }
  stopping = true;
  logger.info({ why }, "stopping: draining in-flight requests");
  const graceful = (async () => {
    if (svc) await svc.stop();
    if (mesh) await mesh.close();
  })();
  withTimeout(graceful, stopTimeoutMs, "graceful stop").then(
    () => {
      logger.info("stopped");
      process.exit(0);
    },
    (e: unknown) => {
      logger.error({ err: e }, "graceful stop failed");
      process.exit(1);
    },
  );
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
// Started by a parent with an IPC channel (the demo): if that parent dies, so do we.
if (process.send) process.on("disconnect", () => stop("parent process went away"));

try {
  mesh = await connectWithRetry({ servers, name, logger, waitMs: connectWaitMs, cancelled: () => stopping });
  if (!stopping) {
    svc = await catalog[name](mesh);
    const ready: ReadyMessage = { type: "ready", service: svc.name, version: svc.version, instance: svc.id, pid: process.pid };
    logger.info({ ...ready, servers }, `ready: ${svc.name}@${svc.version} instance ${svc.id}`);
    process.send?.(ready);
    // Serving stopped by itself (e.g. the server refused its subscriptions: another
    // service's seed?): exit non-zero, so a supervisor restarts it or someone is told.
    void svc.stopped.then((err) => {
      if (!err || stopping) return;
      logger.fatal({ err }, `${name} stopped serving: ${err.message}`);
      process.exit(1);
    });
  }
} catch (e) {
  logger.fatal({ err: e, servers }, `${name} could not start: ${(e as Error).message}`);
  if (mesh) await withTimeout(mesh.close(), 2_000, "closing the connection").catch(() => undefined);
  process.exit(1);
}
