// Summarises V8 .cpuprofile files (node --cpu-prof): self time per function and per
// package, so a profile can be read without DevTools.
//   node bench/profile-summary.mjs <file.cpuprofile | dir>... [--top N] [--calls N]
// A directory stands for every .cpuprofile in it; each file is summarised on its own.
// --calls (run.mjs prints it when profiling) adds CPU µs per call, which is what
// compares across rows: the slower row makes fewer calls in the same profile time.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" }, calls: { type: "string" } } });
const top = Number(values.top);
const calls = values.calls ? Number(values.calls) : undefined;
if (positionals.length === 0) {
  console.error("usage: node bench/profile-summary.mjs <file.cpuprofile | dir>... [--top N] [--calls N]");
  process.exit(2);
}

const files = positionals.flatMap((p) =>
  statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith(".cpuprofile")).sort().map((f) => join(p, f)) : [p],
);

/** `file:///…/node_modules/.pnpm/nats@2.29.3/node_modules/nats/lib/x.js` → `nats/lib/x.js`. */
function shortUrl(url) {
  return url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/node_modules\/\.pnpm\/[^/]+\/node_modules\//, "")
    .replace(/^.*\/packages\/([^/]+)\/dist\//, "$1/")
    .replace(/^.*\/bench\//, "bench/");
}

/** Which package a frame belongs to: where the time goes, at a glance. */
function area(frame) {
  const url = shortUrl(frame.url);
  if (!url) return frame.functionName.startsWith("(") ? frame.functionName : "(native/builtin)";
  if (url.startsWith("node:")) return "node internals";
  const [first, second] = url.split("/");
  return first.startsWith("@") ? `${first}/${second}` : first;
}

function summarise(file) {
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Each sample's node ran until the next sample: attribute the following delta to it.
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  const fns = new Map();
  const areas = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id).callFrame;
    total += us;
    if (f.functionName === "(idle)") idle += us;
    const key = `${f.functionName || "(anonymous)"}  ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}` : ""}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    areas.set(area(f), (areas.get(area(f)) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const ms = (us) => `${(us / 1000).toFixed(0).padStart(6)} ms` + (calls ? `${(us / calls).toFixed(2).padStart(7)} µs/call` : "");
  const sorted = (m) => [...m].filter(([k]) => k !== "(idle)" && !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]);

  console.log(`\n## ${file}`);
  console.log(`sampled ${ms(total).trim()}, idle ${ms(idle).trim()}, busy ${ms(busy).trim()} (percentages are of busy time)\n`);
  console.log("by package:");
  for (const [k, us] of sorted(areas)) console.log(`  ${pct(us)} ${ms(us)}  ${k}`);
  console.log(`\ntop ${top} functions by self time:`);
  for (const [k, us] of sorted(fns).slice(0, top)) console.log(`  ${pct(us)} ${ms(us)}  ${k}`);
}

for (const f of files) summarise(f);
