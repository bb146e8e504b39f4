// Starts real nats-server processes for tests: a temp config with port -1, the ports
// it picked read back from its ports file, stopped by PID and cleaned up afterwards.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface NatsServer {
  url: string;
  port: number;
  monitorPort: number;
  pid: number;
  dir: string;
  /** SIGKILL (default) or SIGTERM; resolves when the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP / SIGCONT: a hung node whose sockets stay open. */
  pause(): void;
  resume(): void;
  /** Starts it again with the same config and ports. */
  restart(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface ServerOptions {
  jetstream?: boolean;
  /** Extra config text appended to the generated file. */
  extraConfig?: string;
  /** Fixed ports instead of -1 (cluster members need to know each other's). */
  port?: number;
  monitorPort?: number;
  serverName?: string;
  dir?: string;
}

export function natsServerBinary(): string {
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv) return fromEnv;
  try {
    return execFileSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("nats-server is not installed: on Debian/Ubuntu run `apt-get install -y nats-server` (or set NATS_SERVER_BIN)");
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

// Temp dirs this process made for its servers. stop() keeps a server's dir (a test may
// restart it on the same JetStream store), so they are removed when the test file's
// process exits; without this, every run left its stores behind in /tmp.
const madeDirs = new Set<string>();
process.once("exit", () => {
  for (const d of madeDirs) rmSync(d, { recursive: true, force: true });
});

export async function startNatsServer(options: ServerOptions = {}): Promise<NatsServer> {
  const bin = natsServerBinary();
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "svcmesh-nats-"));
  if (!options.dir) madeDirs.add(dir);
  const conf = join(dir, "server.conf");
  const lines = [
    `listen: 127.0.0.1:${options.port ?? -1}`,
    `http: 127.0.0.1:${options.monitorPort ?? -1}`,
    `ports_file_dir: "${dir}"`,
    options.serverName ? `server_name: ${options.serverName}` : "",
    options.jetstream ? `jetstream { store_dir: "${join(dir, "js")}", max_mem: 64MB, max_file: 256MB }` : "",
    options.extraConfig ?? "",
  ];
  writeFileSync(conf, lines.filter(Boolean).join("\n") + "\n");

  let proc: ChildProcess;
  let ports: { port: number; monitorPort: number };
  const launch = async () => {
    for (const f of readdirSync(dir)) if (f.endsWith(".ports")) rmSync(join(dir, f));
    proc = spawn(bin, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    ports = await waitForPorts(dir, proc, () => stderr);
    await waitForTcp(ports.port);
  };
  await launch();

  const exited = () => new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve();
    else proc.once("exit", () => resolve());
  });
  const server: NatsServer = {
    get url() { return `nats://127.0.0.1:${ports.port}`; },
    get port() { return ports.port; },
    get monitorPort() { return ports.monitorPort; },
    get pid() { return proc.pid!; },
    dir,
    async stop(signal = "SIGKILL") {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGCONT");
        proc.kill(signal);
      }
      await exited();
    },
    pause() { proc.kill("SIGSTOP"); },
    resume() { proc.kill("SIGCONT"); },
    async restart() {
      await server.stop();
      // Keep the same ports so clients reconnect to the same address.
      const fixed = readFileSync(conf, "utf8")
        .replace(/^listen: .*$/m, `listen: 127.0.0.1:${ports.port}`)
        .replace(/^http: .*$/m, `http: 127.0.0.1:${ports.monitorPort}`);
      writeFileSync(conf, fixed);
      await launch();
    },
    async [Symbol.asyncDispose]() {
      await server.stop();
      if (!options.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

async function waitForPorts(dir: string, proc: ChildProcess, stderr: () => string): Promise<{ port: number; monitorPort: number }> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}: ${stderr()}`);
    const file = readdirSync(dir).find((f) => f.endsWith(".ports"));
    if (file) {
      try {
        const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as { nats: string[]; monitoring?: string[] };
        return { port: portOf(p.nats[0]!), monitorPort: p.monitoring?.[0] ? portOf(p.monitoring[0]) : 0 };
      } catch {
        // written but not complete yet
      }
    }
    await sleep(20);
  }
  throw new Error(`nats-server did not write its ports file within 10 s: ${stderr()}`);
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

async function waitForTcp(port: number): Promise<void> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect(port, "127.0.0.1");
      s.once("connect", () => { s.destroy(); resolve(true); });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(20);
  }
  throw new Error(`nats-server is not accepting connections on 127.0.0.1:${port}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
