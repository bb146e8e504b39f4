// One row against another from a saved run (the baseline need not be bare):
//   node bench/compare.mjs <run.json> <row> <baselineRow>
// e.g. node bench/compare.mjs bench/out/policy.json policy resilience
// Per in-flight count: the ratio of median req/s, the round-by-round ratios (paired,
// since rounds interleave the rows), and median CPU µs per call of each process with
// the difference. CPU per call is the steadier figure on a shared 2-core VM.
import { readFileSync } from "node:fs";

const [file, row, base] = process.argv.slice(2);
if (!file || !row || !base) throw new Error("usage: node bench/compare.mjs <run.json> <row> <baselineRow>");
const { measurements } = JSON.parse(readFileSync(file, "utf8"));

const median = (v) => {
  const s = v.filter(Number.isFinite).sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const of = (r, n) => measurements.filter((m) => m.row === r && m.inFlight === n);
const roles = ["caller", "service", "server"];

for (const n of [...new Set(measurements.map((m) => m.inFlight))].sort((a, b) => a - b)) {
  const a = of(row, n);
  const b = of(base, n);
  if (!a.length || !b.length) continue;
  const paired = a.map((m) => m.rps / b.find((x) => x.round === m.round)?.rps).filter(Number.isFinite);
  const cpu = (ms, role) => median(ms.map((m) => m.cpu?.perCallUs[role]));
  const total = (ms) => median(ms.map((m) => roles.reduce((t, r) => t + (m.cpu?.perCallUs[r] ?? NaN), 0)));
  console.log(`${n} in flight: ${row} / ${base} req/s = ${(median(a.map((m) => m.rps)) / median(b.map((m) => m.rps))).toFixed(3)}× ` +
    `(medians ${Math.round(median(a.map((m) => m.rps)))} / ${Math.round(median(b.map((m) => m.rps)))}); ` +
    `per round ${paired.map((x) => x.toFixed(2)).join(", ")} (median ${median(paired).toFixed(3)})`);
  for (const role of roles) {
    const x = cpu(a, role);
    const y = cpu(b, role);
    console.log(`    CPU µs/call ${role.padEnd(7)} ${x.toFixed(1).padStart(6)} vs ${y.toFixed(1).padStart(6)}  (${x - y >= 0 ? "+" : ""}${(x - y).toFixed(1)})`);
  }
  const ta = total(a);
  const tb = total(b);
  console.log(`    CPU µs/call all     ${ta.toFixed(1).padStart(6)} vs ${tb.toFixed(1).padStart(6)}  (${ta - tb >= 0 ? "+" : ""}${(ta - tb).toFixed(1)}; ` +
    `throughput at equal CPU: ${(tb / ta).toFixed(3)}×)`);
}
