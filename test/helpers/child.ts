// Child processes a test starts and watches: what they print (the last 20 kB), their exit,
// and a bound on how long to wait for anything. Tests kill what is left in `after`.
import { type ChildProcess, spawn } from "node:child_process";

export interface Started {
  proc: ChildProcess;
  /** stdout and stderr together, the last 20,000 characters. */
  output: () => string;
  exit: Promise<number | null>;
}

/** Starts `cmd args` with exactly `env`, recording it in `into` (for killing in `after`). */
export function run(into: ChildProcess[], cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Started {
  const proc = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  into.push(proc);
  let out = "";
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-20_000));
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  const exit = new Promise<number | null>((resolve) => proc.on("close", (code) => resolve(code)));
  return { proc, output: () => out, exit };
}

/** SIGKILLs every process of `procs` still running. */
export function killAll(procs: ChildProcess[]): void {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
}

/** `p`, or a rejection naming `what` after `ms`. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
