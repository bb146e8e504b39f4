// Runs the built `svcmesh` command as a process, for the CLI suites.
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const CLI_MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time of the run. */
  ms: number;
}

export interface CliOptions {
  /** Added to the environment (NATS_URL, SVCMESH_SEED, ...). */
  env?: Record<string, string>;
  stdin?: string;
  /** Killed after this long (default 15 s). */
  timeoutMs?: number;
  /** Nobody reads stdout: its reader is closed before the command writes (a `| head` that is done). */
  closeStdout?: boolean;
}

export function runCli(args: string[], opts: CliOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI_MAIN, ...args], {
      env: { ...process.env, SVCMESH_LOG_LEVEL: "silent", ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    if (opts.closeStdout) child.stdout.destroy();
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 15_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.end(opts.stdin ?? "");
  });
}

/** For commands that need no server: NATS_URL points at a closed port. */
export function runCliOffline(args: string[]): Omit<CliRun, "ms"> {
  const r = spawnSync(process.execPath, [CLI_MAIN, ...args], {
    env: { ...process.env, SVCMESH_LOG_LEVEL: "silent", NATS_URL: "nats://127.0.0.1:1" },
    encoding: "utf8",
    timeout: 15_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface LiveRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * A long-running command (`watch`, `top`) as a process: its output so far, and its end
 * (killed after `killAfterMs` at the latest).
 */
export function spawnCli(args: string[], env: Record<string, string>, killAfterMs: number, opts: Pick<CliOptions, "closeStdout"> = {}): { child: ChildProcessWithoutNullStreams; out: { stdout: string; stderr: string }; done: Promise<LiveRun> } {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], {
    env: { ...process.env, SVCMESH_LOG_LEVEL: "silent", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdin.end();
  if (opts.closeStdout) child.stdout.destroy();
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out.stderr += d.toString()));
  const done = new Promise<LiveRun>((resolve, reject) => {
    const killer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, ...out });
    });
  });
  return { child, out, done };
}

/** Runs `act` every 100 ms until `until()` holds (at most 10 s): a CLI subscribes at a moment we cannot see. */
export async function keepDoing(act: () => Promise<unknown>, until: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!until() && Date.now() < deadline) {
    await act();
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The non-empty lines of a command's output. */
export function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.length > 0);
}

/** With --json, a failure is one JSON line on stderr: its `error`. */
export function jsonError(stderr: string): { code: string; message: string; details?: unknown } {
  assert.equal(lines(stderr).length, 1, stderr);
  return (JSON.parse(stderr) as { error: { code: string; message: string; details?: unknown } }).error;
}
