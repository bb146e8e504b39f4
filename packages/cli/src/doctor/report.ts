// What `svcmesh doctor` reports: one finding per check, printed as one line each.
import { plural, printable } from "../output.js";

/** ok: as it should be; info: worth knowing; warn: probably wrong; error: breaks something; skipped: could not run. */
export type Status = "ok" | "info" | "warn" | "error" | "skipped";

export interface Finding {
  /** What was checked, e.g. "stream SVC_EVENTS". */
  check: string;
  status: Status;
  message: string;
  /** What to do (warn and error), else null. */
  hint: string | null;
}

export const ok = (check: string, message: string): Finding => ({ check, status: "ok", message, hint: null });
export const info = (check: string, message: string, hint: string | null = null): Finding => ({ check, status: "info", message, hint });
export const warn = (check: string, message: string, hint: string): Finding => ({ check, status: "warn", message, hint });
export const error = (check: string, message: string, hint: string): Finding => ({ check, status: "error", message, hint });
export const skipped = (check: string, why: string): Finding => ({ check, status: "skipped", message: why, hint: null });

/** The verdict column; a skipped check has none (its message says `skipped: <why>`). */
const COLUMN: Record<Status, string> = { ok: "ok", info: "info", warn: "warn", error: "error", skipped: "-" };
const WIDTH = Math.max(...Object.values(COLUMN).map((s) => s.length));

/** `warn   stream SVC_EVENTS: missing: ... → what to do`. Text from the mesh made printable. */
export function formatFinding(f: Finding): string {
  const message = f.status === "skipped" ? `skipped: ${f.message}` : f.message;
  return printable(`${COLUMN[f.status].padEnd(WIDTH)}  ${f.check}: ${message}${f.hint ? ` → ${f.hint}` : ""}`);
}

function countBy(findings: readonly Finding[], status: Status): number {
  return findings.filter((f) => f.status === status).length;
}

/** `12 checks: 9 ok, 1 warning, 1 error, 1 skipped` (the info and skipped parts only when there are any). */
export function formatSummary(findings: readonly Finding[]): string {
  const parts = [`${countBy(findings, "ok")} ok`, plural(countBy(findings, "warn"), "warning"), plural(countBy(findings, "error"), "error")];
  if (countBy(findings, "info") > 0) parts.push(`${countBy(findings, "info")} info`);
  if (countBy(findings, "skipped") > 0) parts.push(`${countBy(findings, "skipped")} skipped`);
  return `${plural(findings.length, "check")}: ${parts.join(", ")}`;
}
