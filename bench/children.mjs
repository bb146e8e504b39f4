// Forked child processes (callers, services) with an IPC channel. Every child is
// tracked until it exits, so run.mjs can kill whatever is left on error or SIGINT.
import { fork } from "node:child_process";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const live = new Set();

/** Extra node flags for every child, e.g. BENCH_NODE_ARGS="--trace-gc" (NODE_OPTIONS refuses some). */
const EXTRA_ARGS = (process.env.BENCH_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);

/** Forks bench/<script> with args; execArgv lets a run add e.g. --cpu-prof. */
export function forkChild(script, args, execArgv = []) {
  const child = fork(new URL(script, import.meta.url), args, {
    execArgv: [...EXTRA_ARGS, ...execArgv],
    // svcmesh logs through pino on stdout; keep the table readable.
    env: { ...process.env, SVCMESH_LOG_LEVEL: process.env.SVCMESH_LOG_LEVEL ?? "warn" },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** A bench script of this checkout, or of the checkout whose bench/ is `benchDir`. */
export function benchScript(name, benchDir) {
  return benchDir ? pathToFileURL(join(resolve(benchDir), name)).href : name;
}

/** The first message from the child carrying `key`; rejects if it exits or is too slow. */
export function nextMessage(child, key, timeoutMs) {
  return new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m && typeof m === "object" && key in m) done(undefined, m);
    };
    const onExit = (code, signal) => done(new Error(`child ${child.pid} exited (${signal ?? code}) before sending "${key}"`));
    const timer = setTimeout(() => done(new Error(`child ${child.pid} sent no "${key}" within ${timeoutMs} ms`)), timeoutMs);
    function done(err, m) {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      if (err) reject(err);
      else resolve(m);
    }
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

/** Resolves when the child has exited; SIGKILLs it if it takes longer than graceMs. */
export function exited(child, graceMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Last resort (finally blocks, signal handlers): SIGKILL every child, resolve once they are reaped. */
export function killAll() {
  const gone = [...live].map((child) => exited(child, 1_000));
  for (const child of live) child.kill("SIGKILL");
  return Promise.all(gone);
}

/**
 * `count` processes of bench/service.mjs serving `row`, once every one says it serves.
 * `benchDir`: another checkout's bench/ (interleaved.mjs's row@dir), to compare builds.
 */
export async function startServices(row, url, count, execArgv = [], timeoutMs = 30_000, benchDir = undefined) {
  const children = Array.from({ length: count }, () => forkChild(benchScript("service.mjs", benchDir), [row, url], execArgv));
  await Promise.all(children.map((child) => nextMessage(child, "ready", timeoutMs)));
  return children;
}

/** Tells each child "stop" (services drain, callers close) and waits for all to exit. */
export async function stopChildren(children, graceMs = 5_000) {
  for (const child of children) if (child.connected) child.send("stop");
  await Promise.all(children.map((child) => exited(child, graceMs)));
}

/** Mean RSS of service processes, bytes (each answers "rss", service.mjs). */
export async function meanRss(services) {
  const rss = await Promise.all(services.map(async (child) => {
    child.send("rss");
    return (await nextMessage(child, "rss", 5_000)).rss;
  }));
  return rss.reduce((a, b) => a + b, 0) / rss.length;
}

/**
 * On SIGINT or SIGTERM: SIGKILL every child and stop the nats-servers of `rows` (each
 * `{ server }`, the array as it fills), within 5 s, then exit 130 or 143.
 */
export function stopAllOnSignal(rows) {
  const abort = async (signal) => {
    await Promise.race([Promise.all([killAll(), ...rows.map((r) => r.server.stop())]), new Promise((resolve) => setTimeout(resolve, 5_000))]);
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", abort);
  process.once("SIGTERM", abort);
}
