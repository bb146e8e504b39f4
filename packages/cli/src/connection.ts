// One short-lived mesh connection per command: fail fast, never reconnect, always close.
import { connect, isMeshError, type Mesh } from "svcmesh";
import { CliError, usageError } from "./errors.js";
import { type GlobalOptions, servers } from "./options.js";

/** How long connecting may take before the CLI gives up. */
export const CONNECT_TIMEOUT_MS = 2_000;
/** How long closing (draining) may take before the connection is dropped. */
const CLOSE_TIMEOUT_MS = 2_000;

export const DEFAULT_CLIENT_NAME = "svcmesh-cli";

export async function withMesh<T>(globals: GlobalOptions, name: string, fn: (mesh: Mesh) => Promise<T>): Promise<T> {
  const mesh = await open(globals, name);
  try {
    return await fn(mesh);
  } finally {
    await close(mesh);
  }
}

async function open(globals: GlobalOptions, name: string): Promise<Mesh> {
  const list = servers(globals.server);
  if (list.length === 0) throw usageError("no NATS server given (--server or NATS_URL)");
  try {
    return await connect({
      servers: list,
      name,
      logLevel: "silent", // library logs would mix with command output
      events: { createStream: false }, // a one-shot command must not create streams as a side effect
      audit: { enabled: false }, // it serves nothing: no audit records, no SVC_AUDIT
      policy: { watch: false, required: false }, // an operator tool: SVCMESH_POLICY_REQUIRED is for services
      nats: { maxReconnectAttempts: 0, reconnect: false, timeout: CONNECT_TIMEOUT_MS, waitOnFirstConnect: false },
    });
  } catch (e) {
    // The library already words this as "cannot connect to NATS at <url>: <reason>".
    if (isMeshError(e)) throw new CliError(e.message, e.code);
    throw new CliError(`cannot connect to NATS at ${list.join(",")}: ${(e as Error).message}`, "UNAVAILABLE");
  }
}

async function close(mesh: Mesh): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), CLOSE_TIMEOUT_MS)));
  const result = await Promise.race([mesh.close().catch(() => undefined), timeout]);
  clearTimeout(timer);
  if (result === "timeout" && !mesh.nc.isClosed()) await mesh.nc.close().catch(() => undefined);
}
