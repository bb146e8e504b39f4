// Plain-text rendering of a story run: one line per claim, then paid claims per
// payments instance.
import type { Outcome, Served, StoryResult } from "./story.js";

/** A readable name for a payments instance (the demo knows its children by label). */
export type LabelOf = (served: Pick<Served, "instance" | "host" | "pid">) => string;

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd());
}

function usd(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : String(n);
}

export function formatOutcomes(outcomes: readonly Outcome[], labelOf: LabelOf): string[] {
  const rows = [["claim", "claimant", "usd", "paid by", "result"]];
  for (const o of outcomes) {
    const c = o.claim;
    rows.push(o.ok
      ? [c.claimId, c.claimantId, usd(o.receipt.usd), labelOf(o.receipt.payments), `paid to ${o.receipt.claimant}, txn ${o.receipt.txn}`]
      : [c.claimId, c.claimantId, usd(c.usd), "-", `${o.code}: ${o.message}`]);
  }
  return table(rows);
}

export function formatServed(result: StoryResult, labelOf: LabelOf): string[] {
  const paid = result.outcomes.filter((o) => o.ok).length;
  const burstFailed = [...result.burstFailures.values()].reduce((a, b) => a + b, 0);
  const lines = [
    `then ${result.burstClaims} more claims in parallel bursts: ${result.burstClaims - burstFailed} paid` +
      (burstFailed ? `, ${burstFailed} failed (${[...result.burstFailures].map(([code, n]) => `${code} ×${n}`).join(", ")})` : ""),
    "",
    `paid claims per payments instance (${paid + result.burstClaims - burstFailed} in all):`,
  ];
  const rows = [...result.served.values()]
    .map((s) => ({ label: labelOf(s), s }))
    .sort((a, b) => a.label.localeCompare(b.label))
    .map(({ label, s }) => [`  ${label}`, `instance ${s.instance}`, `served ${s.count} ${s.count === 1 ? "claim" : "claims"}`]);
  return rows.length ? [...lines, ...table(rows)] : [...lines, "  (none)"];
}
