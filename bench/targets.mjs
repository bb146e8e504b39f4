// The targets of issues #5 (tracing) and #6 checked against one run's table (summary.mjs lines), so a
// run says itself which it met. Medians over rounds decide; each ratio is also shown
// paired round by round ("rounds 0.92 / 0.85 / 0.63"), which says whether the machine
// changed speed between rounds. A target whose rows were not run is "not measured".
//   node bench/targets.mjs [bench/out/latest.json]   checks a saved run
import { atFraction, median, summarize } from "./summary.mjs";

const MAX_FLAT_DRIFT = 0.1;

/** The rows the targets at 256 in flight compare (paired.mjs and interleaved.mjs run these). */
export const TARGET_ROWS = ["ceiling", "moleculer", "moleculerFt", "svcmesh", "tracing1", "tracing1mesh", "tracing100", "everything", "everythingSdk", "rules-10", "rules-10000", "registered-1", "registered-200", "registeredOne-200"];

/** [{ target, met: true | false | null, detail, ratio }]: ratio is the figure the target bounds (undefined when not measured). */
export function checkTargets(lines) {
  const at = (row, inFlight) => lines.find((l) => l.row === row && l.inFlight === inFlight);
  const cpu = (l) => Object.values(l.cpuUsPerCall).reduce((a, b) => a + (b ?? NaN), 0);
  const out = [];
  const check = (target, rows, test) => {
    if (rows.some((r) => !r)) out.push({ target, met: null, detail: "not measured" });
    else out.push({ target, ...test(...rows) });
  };
  const fmt = (x) => x.toFixed(2);
  /** `; <label> a / b / c`: key(x) / key(y) in each round both were measured in. */
  const rounds = (x, y, key, label = "rounds") => {
    const pairs = (x.perRound ?? []).flatMap((a) => {
      const b = (y.perRound ?? []).find((o) => o.round === a.round);
      return b && key(b) ? [fmt(key(a) / key(b))] : [];
    });
    return pairs.length > 1 ? `; ${label} ${pairs.join(" / ")}` : "";
  };
  const rps = (m) => m.rps;
  const p50 = (m) => m.p50us;

  check("svcmesh core req/s ≥ 0.9× ceiling at 256", [at("svcmesh", 256), at("ceiling", 256)], (s, c) => {
    const r = s.rps / c.rps;
    return { met: r >= 0.9, ratio: r, detail: `${fmt(r)}× (${Math.round(s.rps)} vs ${Math.round(c.rps)} req/s${rounds(s, c, rps)})` };
  });
  // "everything": tracing 1% decided by the mesh, as Moleculer decides its own 1% in
  // moleculerFt; "everythingSdk": decided by the OTel SDK's sampler (see rows/policy.mjs).
  for (const [row, how] of [["everything", "tracing decided by the mesh"], ["everythingSdk", "tracing decided by the SDK"]]) {
    check(`svcmesh everything on (${how}) req/s ≥ 1.25× Moleculer with fault tolerance at 256`, [at(row, 256), at("moleculerFt", 256)], (e, m) => {
      const r = e.rps / m.rps;
      return { met: r >= 1.25, ratio: r, detail: `${fmt(r)}× (${Math.round(e.rps)} vs ${Math.round(m.rps)} req/s${rounds(e, m, rps)})` };
    });
    check(`svcmesh everything on (${how}) req/s ≥ 0.8× ceiling at 256`, [at(row, 256), at("ceiling", 256)], (e, c) => {
      const r = e.rps / c.rps;
      return { met: r >= 0.8, ratio: r, detail: `${fmt(r)}× (${Math.round(e.rps)} vs ${Math.round(c.rps)} req/s${rounds(e, c, rps)})` };
    });
  }
  for (const row of ["svcmesh", "everything", "everythingSdk"]) {
    check(`${row} p50 at 1 in flight ≤ 1.1× ceiling's`, [at(row, 1), at("ceiling", 1)], (s, c) => {
      const r = s.p50us / c.p50us;
      return { met: r <= 1.1, ratio: r, detail: `${fmt(r)}× (${s.p50us} vs ${c.p50us} µs${rounds(s, c, p50)})` };
    });
    check(`${row} p99 at 256 ≤ Moleculer defaults'`, [at(row, 256), at("moleculer", 256)], (s, m) => ({
      met: s.p99us <= m.p99us,
      ratio: s.p99us / m.p99us,
      detail: `${s.p99us} vs ${m.p99us} µs`,
    }));
  }
  // Issue #5: tracing on against the same run's core row (tracing off).
  // tracing1: the SDK's sampler decides; tracing1mesh: the mesh decides (rootSampling "mesh").
  for (const [row, min] of [["tracing1", 0.95], ["tracing1mesh", 0.95], ["tracing100", 0.8]]) {
    check(`${row} req/s ≥ ${min}× svcmesh (tracing off) at 256`, [at(row, 256), at("svcmesh", 256)], (t, s) => {
      const r = t.rps / s.rps;
      return { met: r >= min, ratio: r, detail: `${fmt(r)}× (${Math.round(t.rps)} vs ${Math.round(s.rps)} req/s; CPU µs/call ${cpu(t).toFixed(1)} vs ${cpu(s).toFixed(1)}${rounds(t, s, rps)})` };
    });
  }
  // Flat: req/s within 10% of the first step, and CPU per call (all three processes) too,
  // since CPU per call is the steadier figure on a shared machine.
  for (const [name, first, last] of [["policy rules 10 → 10,000", "rules-10", "rules-10000"], ["services 1 → 200, calls spread over all", "registered-1", "registered-200"], ["services 1 → 200, calls to one", "registered-1", "registeredOne-200"]]) {
    check(`per-call cost flat (±10%), ${name}, at 256`, [at(last, 256), at(first, 256)], (l, f) => {
      const r = l.rps / f.rps;
      const c = cpu(l) / cpu(f);
      return {
        met: r >= 1 - MAX_FLAT_DRIFT && c <= 1 + MAX_FLAT_DRIFT,
        ratio: r,
        detail: `req/s ${fmt(r)}×, CPU µs/call ${cpu(l).toFixed(1)} vs ${cpu(f).toFixed(1)} (${fmt(c)}×)${rounds(l, f, rps, "req/s rounds")}`,
      };
    });
  }
  return out;
}

/**
 * Each target judged within each of several runs (paired.mjs's alternations,
 * interleaved.mjs's cycles): `runs` is a list of measurement lists. Per target: the
 * ratios (listed when there are few), their median and quartiles, and in how many runs
 * it was met. Targets a run did not measure are left out.
 */
export function formatTargetsPerRun(runs, heading) {
  const byTarget = new Map();
  for (const measurements of runs) {
    for (const t of checkTargets(summarize(measurements))) {
      if (t.met === null || t.ratio === undefined) continue;
      const entry = byTarget.get(t.target) ?? { ratios: [], met: 0 };
      entry.ratios.push(t.ratio);
      if (t.met) entry.met++;
      byTarget.set(t.target, entry);
    }
  }
  const lines = [heading];
  for (const [target, { ratios, met }] of byTarget) {
    const sorted = [...ratios].sort((a, b) => a - b);
    const q = (p) => atFraction(sorted, p).toFixed(2);
    const listed = ratios.length <= 10 ? `${ratios.map((r) => r.toFixed(2)).join(" ")}; ` : "";
    lines.push(`  ${target}: ${listed}median ${median(ratios).toFixed(2)} (quartiles ${q(0.25)}–${q(0.75)}); met in ${met} of ${ratios.length}`);
  }
  return lines.join("\n");
}

export function formatTargets(results) {
  const mark = { true: "met    ", false: "MISSED ", null: "–      " };
  return ["Targets (issues #5, #6)", ...results.map((t) => `  ${mark[t.met]} ${t.target}: ${t.detail}`)].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { readFileSync } = await import("node:fs");
  const file = process.argv[2] ?? new URL("./out/latest.json", import.meta.url).pathname;
  console.log(formatTargets(checkTargets(summarize(JSON.parse(readFileSync(file, "utf8")).measurements))));
}
