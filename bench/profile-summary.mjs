// Summarises V8 profiles so they can be read without DevTools: .cpuprofile files
// (node --cpu-prof, run.mjs --prof) as self time per function and per package, and
// .heapprofile files (run.mjs --alloc) as bytes allocated per function and per package.
//   node bench/profile-summary.mjs <file | dir>... [--top N] [--calls N]
// A directory stands for every profile in it; each file is summarised on its own.
// --calls (run.mjs prints it when profiling) adds CPU µs or bytes per call, which is what
// compares across rows: the slower row makes fewer calls in the same profile time.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" }, calls: { type: "string" } } });
const top = Number(values.top);
const calls = values.calls ? Number(values.calls) : undefined;
if (positionals.length === 0) {
  console.error("usage: node bench/profile-summary.mjs <file.cpuprofile | file.heapprofile | dir>... [--top N] [--calls N]");
  process.exit(2);
}

const files = positionals.flatMap((p) =>
  statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith(".cpuprofile") || f.endsWith(".heapprofile")).sort().map((f) => join(p, f)) : [p],
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

/** Adds `amount` to the frame's function and package. */
function tally(fns, areas, frame, amount) {
  const key = `${frame.functionName || "(anonymous)"}  ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ""}`;
  fns.set(key, (fns.get(key) ?? 0) + amount);
  areas.set(area(frame), (areas.get(area(frame)) ?? 0) + amount);
}

/** The by-package and top-function lists; `of` is the total percentages are of, `fmt` one amount. */
function print(file, headline, fns, areas, of, fmt, what) {
  const pct = (x) => `${((100 * x) / of).toFixed(1).padStart(5)}%`;
  const sorted = (m) => [...m].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]);
  console.log(`\n## ${file}`);
  console.log(`${headline}\n`);
  console.log("by package:");
  for (const [k, x] of sorted(areas)) console.log(`  ${pct(x)} ${fmt(x)}  ${k}`);
  console.log(`\ntop ${top} functions by ${what}:`);
  for (const [k, x] of sorted(fns).slice(0, top)) console.log(`  ${pct(x)} ${fmt(x)}  ${k}`);
}

/** A CPU profile: self time per function (each sample's node ran until the next sample). */
function summarise(file) {
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
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
    tally(fns, areas, f, us);
  }
  const busy = total - idle;
  const ms = (us) => `${(us / 1000).toFixed(0).padStart(6)} ms` + (calls ? `${(us / calls).toFixed(2).padStart(7)} µs/call` : "");
  print(file, `sampled ${ms(total).trim()}, idle ${ms(idle).trim()}, busy ${ms(busy).trim()} (percentages are of busy time)`, fns, areas, busy, ms, "self time");
}

/** A sampling heap profile: each node's selfSize is the bytes sampled as allocated by its function. */
function summariseAllocations(file) {
  const profile = JSON.parse(readFileSync(file, "utf8"));
  const fns = new Map();
  const areas = new Map();
  let total = 0;
  const stack = [profile.head];
  while (stack.length > 0) {
    const node = stack.pop();
    stack.push(...node.children);
    if (node.selfSize === 0) continue;
    total += node.selfSize;
    tally(fns, areas, node.callFrame, node.selfSize);
  }
  const mb = (b) => `${(b / 1e6).toFixed(1).padStart(7)} MB` + (calls ? `${(b / calls).toFixed(0).padStart(7)} B/call` : "");
  print(file, `allocated ${mb(total).trim()} (sampled)`, fns, areas, total, mb, "bytes allocated");
}

for (const f of files) (f.endsWith(".heapprofile") ? summariseAllocations : summarise)(f);
