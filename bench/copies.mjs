// The per-process view of an interleaved run (interleaved.mjs): one line per copy, each
// row process pair as started (a row named twice, or `row@DIR` from another checkout),
// and each copy's throughput against the first copy's, cycle by cycle. The main table
// merges copies of a row and knows nothing of other checkouts; this is where two builds
// or two processes of one build are compared.
import { atFraction as at, median } from "./summary.mjs";

/** The mean of `value(m)` over a copy's slices, weighted by their calls; undefined if none has one. */
function perCall(ms, value) {
  let sum = 0;
  let calls = 0;
  for (const m of ms) {
    const v = value(m);
    if (v === null || v === undefined) continue;
    sum += v * m.completed;
    calls += m.completed;
  }
  return calls ? sum / calls : undefined;
}

/** CPU µs per call of one role over all of a copy's slices. */
function cpuPerCall(ms, role) {
  return perCall(ms, (m) => m.cpu?.perCallUs?.[role])?.toFixed(1) ?? "–";
}

/** The caller's GC over a copy's slices: ms per 1,000 calls, and scavenges / mark-compacts per 1,000 calls. */
function gcPerCall(ms) {
  const [gcMs, minor, major] = ["ms", "minor", "major"].map((k) => perCall(ms, (m) => m.gcPer1kCalls?.[k]));
  return gcMs === undefined ? "–" : `${gcMs.toFixed(1)} (${minor.toFixed(2)} / ${major.toFixed(3)})`;
}

/**
 * `copies`: the names of the copies in start order (index = measurement.copy);
 * `measurements`: every slice, with `copy`, `round` and `rps`.
 */
export function formatCopies(copies, measurements) {
  const lines = ["Copies (each process pair as started; ratio to copy 0 within each cycle: median, quartiles, cycles ahead)",
    "| copy | row | req/s median (quartiles) | CPU µs/call caller / service / nats | caller GC ms per 1k calls (scavenges / mark-compacts per 1k) | × copy 0 per cycle |",
    "| ---: | --- | ---: | ---: | ---: | ---: |"];
  const firstByRound = new Map(measurements.filter((m) => m.copy === 0).map((m) => [m.round, m.rps]));
  for (const [copy, name] of copies.entries()) {
    const ms = measurements.filter((m) => m.copy === copy);
    if (ms.length === 0) continue;
    const rps = ms.map((m) => m.rps).sort((a, b) => a - b);
    const k = (n) => `${(n / 1000).toFixed(1)}k`;
    let ratio = "–";
    if (copy > 0) {
      const ratios = ms.filter((m) => firstByRound.get(m.round)).map((m) => m.rps / firstByRound.get(m.round)).sort((a, b) => a - b);
      if (ratios.length) ratio = `${median(ratios).toFixed(3)} (${at(ratios, 0.25).toFixed(2)}–${at(ratios, 0.75).toFixed(2)}; ${ratios.filter((r) => r > 1).length}/${ratios.length})`;
    }
    const cpu = ["caller", "service", "server"].map((role) => cpuPerCall(ms, role)).join(" / ");
    lines.push(`| ${copy} | ${name} | ${k(median(rps))} (${k(at(rps, 0.25))}–${k(at(rps, 0.75))}) | ${cpu} | ${gcPerCall(ms)} | ${ratio} |`);
  }
  return lines.join("\n");
}
