// Turns per-round measurements into the tables: medians over rounds, the min–max
// spread of throughput, and each row's throughput as a ratio to its base row at the
// same concurrency (main table: bare nc.request; scale table: the group's first step),
// from the same run, never from another day's numbers.
//   node bench/summary.mjs [bench/out/latest.json]   reprints the tables of a saved run
import { ROWS, TABLES } from "./rows/index.mjs";

/** The value at fraction p (0..1) of an ascending list, by nearest rank. */
export function atFraction(sorted, p) {
  return sorted[Math.round(p * (sorted.length - 1))];
}

/** The median of the numbers among `values` (null and undefined left out), or null if none. */
export function median(values) {
  const v = values.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export function summarize(measurements) {
  const lines = [];
  for (const row of Object.keys(ROWS)) {
    const inFlights = [...new Set(measurements.filter((m) => m.row === row).map((m) => m.inFlight))].sort((a, b) => a - b);
    for (const inFlight of inFlights) {
      const ms = measurements.filter((m) => m.row === row && m.inFlight === inFlight);
      const rps = ms.map((m) => m.rps);
      lines.push({
        row,
        table: ROWS[row].table,
        label: ROWS[row].label,
        scale: ROWS[row].scale,
        instances: ROWS[row].instances,
        inFlight,
        rounds: ms.length,
        rps: median(rps),
        rpsMin: Math.min(...rps),
        rpsMax: Math.max(...rps),
        p50us: median(ms.map((m) => m.p50us)),
        p99us: median(ms.map((m) => m.p99us)),
        errors: ms.reduce((n, m) => n + m.errors, 0),
        rssMB: median(ms.map((m) => m.rss / 2 ** 20)), // per service process (mean over instances)
        cpuUsPerCall: Object.fromEntries(["caller", "service", "server"].map((role) => [role, median(ms.map((m) => m.cpu?.perCallUs[role]))])),
        otherCoresMax: Math.max(0, ...ms.map((m) => m.cpu?.otherCores ?? 0)),
        stealCoresMax: Math.max(0, ...ms.map((m) => m.cpu?.stealCores ?? 0)),
        // Kept for ratios paired round by round (targets.mjs): medians of a run whose
        // machine changed speed between rounds mix phases.
        perRound: ms.map((m) => ({ round: m.round, rps: m.rps, p50us: m.p50us })),
      });
    }
  }
  for (const line of lines) {
    const baseRow = ROWS[line.row].base;
    line.base = baseRow;
    const base = lines.find((b) => b.row === baseRow && b.inFlight === line.inFlight);
    line.ratio = base?.rps ? line.rps / base.rps : null;
    // Paired per round too: bare itself swings between rounds, and the spread of
    // the paired ratios says how firm the headline ratio is.
    const paired = measurements
      .filter((m) => m.row === line.row && m.inFlight === line.inFlight)
      .map((m) => m.rps / measurements.find((b) => b.row === baseRow && b.inFlight === m.inFlight && b.round === m.round)?.rps)
      .filter(Number.isFinite);
    line.ratioMin = paired.length ? Math.min(...paired) : null;
    line.ratioMax = paired.length ? Math.max(...paired) : null;
  }
  return lines;
}

const k = (n) => `${(n / 1000).toFixed(1)}k`;
const num = (n, digits = 0) => (n === null ? "–" : n.toFixed(digits));

const ratioCell = (l) => (l.row === l.base ? "1.00×" : l.ratio === null ? "–" : `${l.ratio.toFixed(2)}× (${l.ratioMin.toFixed(2)}–${l.ratioMax.toFixed(2)})`);

/**
 * One table as Markdown: readable in a terminal, pasteable into RESULTS.md as is. The
 * scale table has a column for the varied parameter, and its ratio is to the group's
 * first step (payload rows: to bare at the same size); its service CPU and RSS are of
 * all instances together and per instance.
 */
export function formatTable(lines, table = "main") {
  lines = lines.filter((l) => l.table === table);
  if (lines.length === 0) return "";
  const scale = table === "scale";
  const head = ["row", ...(scale ? ["scale"] : []), "in-flight", "req/s median (min–max)", "p50 µs", "p99 µs",
    scale ? "× group base (per-round min–max)" : "× bare (per-round min–max)", scale ? "RSS MB per service process" : "service RSS MB", "errors",
    "CPU µs/call caller/svc/nats", "others' cores / host steal (max)"];
  const body = lines.map((l) => [
    l.label,
    ...(scale ? [l.scale] : []),
    String(l.inFlight),
    `${k(l.rps)} (${k(l.rpsMin)}–${k(l.rpsMax)})`,
    num(l.p50us),
    num(l.p99us),
    ratioCell(l),
    num(l.rssMB, 0),
    String(l.errors),
    Object.values(l.cpuUsPerCall).map((us) => num(us, 1)).join(" / "),
    `${l.otherCoresMax.toFixed(2)} / ${l.stealCoresMax.toFixed(2)}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const textColumns = scale ? 2 : 1; // left-aligned; numbers right-aligned
  const fmt = (cells) => `| ${cells.map((c, i) => (i < textColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ")} |`;
  const rule = `| ${widths.map((w, i) => (i < textColumns ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ")} |`;
  return [fmt(head), rule, ...body.map(fmt)].join("\n");
}

/** Every table that has lines, each under a heading. */
export function formatTables(lines) {
  return TABLES.map((t) => [t, formatTable(lines, t)])
    .filter(([, text]) => text)
    .map(([t, text]) => `${t === "main" ? "Main table" : "Scale table"}\n\n${text}`)
    .join("\n\n");
}

// Run directly: reprint a saved run's table.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { readFileSync } = await import("node:fs");
  const file = process.argv[2] ?? new URL("./out/latest.json", import.meta.url).pathname;
  console.log(formatTables(summarize(JSON.parse(readFileSync(file, "utf8")).measurements)));
}
