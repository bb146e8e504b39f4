// Where the demo finds a NATS server: NATS_URL if set; else a server already listening
// on 127.0.0.1:4222 (the port probed can be changed with SVCMESH_DEMO_PORT_CHECK);
// else a throwaway nats-server it starts on a free loopback port and stops afterwards.
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { poll, withTimeout } from "./bounded.js";

export interface NatsEndpoint {
  /** A NATS_URL-style string (possibly a comma-separated list). */
  url: string;
  /** How it was found, for the reader of the demo's output. */
  origin: string;
  /** Stops the server if the demo started it; otherwise does nothing. */
  stop(): Promise<void>;
}

export const INSTALL_HINT = "install it with `apt-get install -y nats-server` (Debian/Ubuntu package nats-server), or set NATS_URL to a running server";

export class NatsServerMissing extends Error {
  constructor(detail: string) {
    super(`nats-server is needed but ${detail}: ${INSTALL_HINT}`);
    this.name = "NatsServerMissing";
  }
}

const DEFAULT_PROBE = { host: "127.0.0.1", port: 4222 };

/** SVCMESH_DEMO_PORT_CHECK: a port, host:port, or "off" (always start a local server). */
export function probeTarget(text: string | undefined): { host: string; port: number } | undefined {
  if (text === undefined || text === "") return DEFAULT_PROBE;
  if (/^(off|none|no|0)$/i.test(text)) return undefined;
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new Error(`SVCMESH_DEMO_PORT_CHECK must be a port, host:port or "off", got ${JSON.stringify(text)}`);
  return { host: m[1] ?? DEFAULT_PROBE.host, port };
}

export async function findNats(env: NodeJS.ProcessEnv = process.env): Promise<NatsEndpoint> {
  const fromEnv = env.NATS_URL?.trim();
  if (fromEnv) return { url: fromEnv, origin: "from NATS_URL", stop: async () => undefined };
  const probe = probeTarget(env.SVCMESH_DEMO_PORT_CHECK);
  if (probe && (await speaksNats(probe.host, probe.port, 1_500))) {
    return { url: `nats://${probe.host}:${probe.port}`, origin: "a NATS server already listening there", stop: async () => undefined };
  }
  const bin = findNatsServerBinary(env);
  const server = await startNatsServer(bin);
  return { url: server.url, origin: `a nats-server started by the demo (pid ${server.pid}), stopped at the end`, stop: () => server.stop() };
}

/** True when a NATS server answers on host:port (it greets every client with an INFO line). */
export function speaksNats(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let seen = "";
    const socket = tcpConnect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on("data", (d: Buffer) => {
      seen += d.toString("latin1");
      if (seen.length >= 5) done(seen.startsWith("INFO "));
    });
    socket.on("error", () => done(false));
    socket.on("close", () => done(false));
  });
}

/** NATS_SERVER_BIN if set, else nats-server on PATH or in the sbin directories Debian installs it to. */
export function findNatsServerBinary(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.NATS_SERVER_BIN;
  if (explicit) {
    if (isExecutable(explicit)) return explicit;
    throw new NatsServerMissing(`NATS_SERVER_BIN=${explicit} is not an executable file`);
  }
  const dirs = (env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const extra of ["/usr/sbin", "/usr/local/sbin", "/sbin"]) if (!dirs.includes(extra)) dirs.push(extra);
  for (const dir of dirs) {
    const candidate = join(dir, "nats-server");
    if (isExecutable(candidate)) return candidate;
  }
  throw new NatsServerMissing("it is not installed (not found on PATH)");
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

interface LocalServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts nats-server on a free loopback port (port -1, read back from its ports file). */
export async function startNatsServer(bin: string): Promise<LocalServer> {
  const dir = mkdtempSync(join(tmpdir(), "svcmesh-demo-nats-"));
  const conf = join(dir, "nats.conf");
  writeFileSync(conf, [`listen: 127.0.0.1:-1`, `ports_file_dir: "${dir}"`, `server_name: svcmesh-demo`, ""].join("\n"));
  const proc: ChildProcess = spawn(bin, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const spawnError = new Promise<never>((_, reject) => proc.once("error", (e) => reject(new Error(`could not run ${bin}: ${e.message}`))));
  spawnError.catch(() => undefined);

  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
      proc.kill("SIGTERM");
      await withTimeout(exited, 5_000, "nats-server stopping after SIGTERM").catch(async () => {
        proc.kill("SIGKILL");
        await withTimeout(exited, 2_000, "nats-server stopping after SIGKILL").catch(() => undefined);
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const port = await Promise.race([
      spawnError,
      poll("nats-server writing its ports file", 10_000, 25, async () => {
        if (proc.exitCode !== null) throw new Error(`nats-server exited with code ${proc.exitCode}: ${stderr.trim()}`);
        return readPort(dir);
      }),
    ]);
    await poll(`nats-server answering on 127.0.0.1:${port}`, 10_000, 50, async () => ((await speaksNats("127.0.0.1", port, 1_000)) ? true : undefined));
    return { url: `nats://127.0.0.1:${port}`, pid: proc.pid!, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

function readPort(dir: string): number | undefined {
  const file = readdirSync(dir).find((f) => f.endsWith(".ports"));
  if (!file) return undefined;
  try {
    const ports = JSON.parse(readFileSync(join(dir, file), "utf8")) as { nats?: string[] };
    const url = ports.nats?.[0];
    return url ? Number(new URL(url).port) : undefined;
  } catch {
    return undefined; // written but not complete yet
  }
}
