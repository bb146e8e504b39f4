// A private nats-server for one bench run: temp config on a free loopback port (-1),
// the chosen port read back from its ports file, stopped by PID. Never the shared
// server on :4222, which other work on this machine uses.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const BIN = process.env.NATS_SERVER_BIN ?? "nats-server";
const START_TIMEOUT_MS = 5000;

export function natsServerVersion() {
  return execFileSync(BIN, ["--version"], { encoding: "utf8" }).trim().replace(/^nats-server:\s*/, "");
}

/**
 * Starts the server. `jetstream: true` enables JetStream with its store in the temp
 * dir (removed by stop()), for the policy KV bucket (policy-propagation.mjs).
 */
export async function startNatsServer({ jetstream = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "svcmesh-bench-"));
  const conf = join(dir, "bench.conf");
  const js = jetstream ? `jetstream {\n  store_dir: "${join(dir, "js")}"\n  max_mem: 64MB\n  max_file: 256MB\n}\n` : "";
  writeFileSync(conf, `listen: 127.0.0.1:-1\nports_file_dir: "${dir}"\n${js}`);
  const proc = spawn(BIN, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  proc.stderr.on("data", (d) => (log = (log + d).slice(-2000)));

  const running = () => proc.exitCode === null && proc.signalCode === null;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  /** SIGTERM, then SIGKILL; waits for the exit each time so no zombie outlives the run. */
  const stop = async () => {
    for (const [signal, graceMs] of [["SIGTERM", 3000], ["SIGKILL", 1000]]) {
      if (!running()) break;
      proc.kill(signal);
      await Promise.race([exited, sleep(graceMs)]);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
  for (const deadline = Date.now() + START_TIMEOUT_MS; Date.now() < deadline; await sleep(25)) {
    if (proc.exitCode !== null) break;
    try {
      const url = JSON.parse(readFileSync(portsFile, "utf8")).nats[0];
      return { url, pid: proc.pid, stop };
    } catch {
      // not written yet (or half written): poll again
    }
  }
  await stop();
  throw new Error(`nats-server did not start within ${START_TIMEOUT_MS} ms:\n${log}`);
}
