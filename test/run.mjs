// Runs every test file with node's test runner (TypeScript through tsx). Each file is
// its own process; files run two at a time to fit a 2-core machine.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const roots = [join(root, "test"), ...readdirSync(join(root, "packages")).map((p) => join(root, "packages", p, "test"))];

function find(dir) {
  let out = [];
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const e of entries) {
    const p = join(dir, e);
    if (e === "node_modules" || e === "dist") continue;
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (e.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const filter = process.argv.slice(2);
const files = roots.flatMap(find).map((f) => relative(root, f)).filter((f) => filter.length === 0 || filter.some((x) => f.includes(x))).sort();
if (files.length === 0) {
  console.error("no test files found");
  process.exit(1);
}
const result = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=120000", ...files], {
  cwd: root,
  stdio: "inherit",
  env: { SVCMESH_LOG_LEVEL: "silent", ...process.env },
});
process.exit(result.status ?? 1);
