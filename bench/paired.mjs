// The targets at 256 in flight, judged from paired alternations: every row they compare,
// measured back to back (`run.mjs --rounds 1`, one process pair per row), several times
// over, each target's ratio taken within each alternation, and the median of those. On
// this VM, whose speed can double or halve within minutes, two rows measured seconds apart
// compare better than medians over a 25-minute `pnpm bench`.
//
//   node bench/paired.mjs [--times 5] [--duration-ms 2000] [--warmup-ms 800]
//
// Prints, per target, the ratio in each alternation, their median and quartiles, and in how many
// alternations the target was met. Targets at 1 in flight (p50) are left to `pnpm bench`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { TARGET_ROWS, formatTargetsPerRun } from "./targets.mjs";

const { values } = parseArgs({ options: { times: { type: "string", default: "5" }, "duration-ms": { type: "string", default: "2000" }, "warmup-ms": { type: "string", default: "800" } } });
const times = Number(values.times);
if (!Number.isInteger(times) || times < 1 || times > 50) throw new Error(`--times must be a whole number from 1 to 50, got ${values.times}`);

const dir = mkdtempSync(join(tmpdir(), "svcmesh-paired-"));
/** Each alternation's measurements. */
const runs = [];
try {
  for (let i = 1; i <= times; i++) {
    const out = join(dir, `${i}.json`);
    const args = ["bench/run.mjs", "--rows", TARGET_ROWS.join(","), "--inflight", "256", "--rounds", "1", "--attempts", "1", "--duration-ms", values["duration-ms"], "--warmup-ms", values["warmup-ms"], "--out", out];
    const run = spawnSync(process.execPath, args, { cwd: new URL("..", import.meta.url).pathname, stdio: ["ignore", "ignore", "inherit"] });
    if (run.status !== 0) throw new Error(`alternation ${i}: run.mjs exited with ${run.status}`);
    runs.push(JSON.parse(readFileSync(out, "utf8")).measurements);
    console.error(`alternation ${i}/${times} done`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(formatTargetsPerRun(runs, `Targets at 256 in flight, ${times} paired alternations (ratio per alternation; median, quartiles)`));
