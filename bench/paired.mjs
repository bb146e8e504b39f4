// The targets at 256 in flight, judged from paired alternations: every row they compare,
// measured back to back (`run.mjs --rounds 1`, one process pair per row), several times
// over, each target's ratio taken within each alternation, and the median of those. On
// this VM, whose speed can double or halve within minutes, two rows measured seconds apart
// compare better than medians over a 25-minute `pnpm bench`.
//
//   node bench/paired.mjs [--times 5] [--duration-ms 2000] [--warmup-ms 800]
//
// Prints, per target, the ratio in each alternation, their median, and in how many
// alternations the target was met. Targets at 1 in flight (p50) are left to `pnpm bench`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { median, summarize } from "./summary.mjs";
import { TARGET_ROWS, checkTargets } from "./targets.mjs";


const { values } = parseArgs({ options: { times: { type: "string", default: "5" }, "duration-ms": { type: "string", default: "2000" }, "warmup-ms": { type: "string", default: "800" } } });
const times = Number(values.times);
if (!Number.isInteger(times) || times < 1 || times > 50) throw new Error(`--times must be a whole number from 1 to 50, got ${values.times}`);

const dir = mkdtempSync(join(tmpdir(), "svcmesh-paired-"));
/** target → ratios (one per alternation) and how many alternations met it. */
const byTarget = new Map();
try {
  for (let i = 1; i <= times; i++) {
    const out = join(dir, `${i}.json`);
    const args = ["bench/run.mjs", "--rows", TARGET_ROWS.join(","), "--inflight", "256", "--rounds", "1", "--attempts", "1", "--duration-ms", values["duration-ms"], "--warmup-ms", values["warmup-ms"], "--out", out];
    const run = spawnSync(process.execPath, args, { cwd: new URL("..", import.meta.url).pathname, stdio: ["ignore", "ignore", "inherit"] });
    if (run.status !== 0) throw new Error(`alternation ${i}: run.mjs exited with ${run.status}`);
    for (const t of checkTargets(summarize(JSON.parse(readFileSync(out, "utf8")).measurements))) {
      if (t.met === null) continue; // a target at 1 in flight
      const entry = byTarget.get(t.target) ?? { ratios: [], met: 0 };
      entry.ratios.push(t.ratio);
      if (t.met) entry.met++;
      byTarget.set(t.target, entry);
    }
    console.error(`alternation ${i}/${times} done`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(`Targets at 256 in flight, ${times} paired alternations (ratio per alternation; median)`);
for (const [target, { ratios, met }] of byTarget) {
  console.log(`  ${target}: ${ratios.map((r) => r.toFixed(2)).join(" ")}; median ${median(ratios).toFixed(2)}; met in ${met} of ${ratios.length}`);
}
