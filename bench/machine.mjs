// Where a run happened, for bench/out/latest.json and RESULTS.md: numbers from a
// 2-core box shared by caller, service and nats-server only compare within one run.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, cpus } from "node:os";
import { dirname, join } from "node:path";
import { natsServerVersion } from "./nats-server.mjs";

const require = createRequire(import.meta.url);

function git(...args) {
  try {
    return execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return undefined;
  }
}

/**
 * A hash of the built svcmesh the children import. Others rebuild packages/ while a
 * run is going; run.mjs compares this before and after so a run that measured two
 * different builds says so instead of passing for one.
 */
export function svcmeshBuild() {
  const dist = dirname(require.resolve("svcmesh"));
  const hash = createHash("sha256");
  const files = readdirSync(dist, { recursive: true }).filter((f) => f.endsWith(".js")).sort();
  for (const f of files) hash.update(f).update(readFileSync(join(dist, f)));
  return hash.digest("hex").slice(0, 12);
}

export function machine() {
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model,
    node: process.version,
    natsServer: natsServerVersion(),
    natsJs: require("nats/package.json").version,
    commit: git("rev-parse", "--short", "HEAD"),
    svcmeshSrcDirty: Boolean(git("status", "--porcelain", "--", "packages/svcmesh/src")),
  };
}
