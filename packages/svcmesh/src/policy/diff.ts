// What changes between two policy documents, leaf by leaf (for `svcmesh policy diff`).
// Objects are compared key by key; arrays (allow lists, roles) and scalars are leaves,
// compared by value, so a reordered allow list shows as one change of that list.
import { formatPath } from "./parse.js";
import type { PolicyDocument } from "./schema.js";

export interface PolicyChange {
  path: (string | number)[];
  kind: "added" | "removed" | "changed";
  before?: unknown;
  after?: unknown;
}

/** Changes from `a` to `b`, in document order (a's keys first, then keys new in b). `a` may be absent (nothing applied yet). */
export function diffPolicies(a: PolicyDocument | undefined, b: PolicyDocument | undefined): PolicyChange[] {
  const out: PolicyChange[] = [];
  walk(a ?? {}, b ?? {}, [], out);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function walk(a: unknown, b: unknown, path: (string | number)[], out: PolicyChange[]): void {
  if (isObject(a) && isObject(b)) {
    for (const k of Object.keys(a)) {
      if (a[k] === undefined) continue;
      if (!Object.hasOwn(b, k) || b[k] === undefined) out.push({ path: [...path, k], kind: "removed", before: a[k] });
      else walk(a[k], b[k], [...path, k], out);
    }
    for (const k of Object.keys(b)) {
      if (b[k] !== undefined && (!Object.hasOwn(a, k) || a[k] === undefined)) out.push({ path: [...path, k], kind: "added", after: b[k] });
    }
    return;
  }
  if (!equal(a, b)) out.push({ path, kind: "changed", before: a, after: b });
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => equal(a[k], b[k]));
  }
  return false;
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

/**
 * One line per change, `+` added, `-` removed, `~` changed:
 * `~ services.payments.traffic["2.2.0"]: 10 → 50`. "no changes" when there are none.
 */
export function formatDiff(changes: readonly PolicyChange[]): string {
  if (changes.length === 0) return "no changes";
  return changes
    .map((c) => {
      const p = formatPath(c.path) || "(document)";
      if (c.kind === "added") return `+ ${p}: ${show(c.after)}`;
      if (c.kind === "removed") return `- ${p}: ${show(c.before)}`;
      return `~ ${p}: ${show(c.before)} → ${show(c.after)}`;
    })
    .join("\n");
}
