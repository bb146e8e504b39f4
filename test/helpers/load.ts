// Bounded load for the reliability tests: a fixed number of calls, a fixed number of
// workers and a wall-clock bound. Every call's outcome is recorded; a call that has not
// settled within its deadline plus slack is recorded as LOST rather than hanging the test.
import { isMeshError } from "svcmesh";

export interface CallOutcome<T> {
  /** The call's number, 0-based, in the order calls were started. */
  i: number;
  startedAt: number;
  settledAt: number;
  ok: boolean;
  value?: T;
  /** The MeshError code; LOST when it never settled in time; NOT_A_MESH_ERROR for anything else thrown. */
  code?: string;
  error?: unknown;
}

export interface LoadOptions<T> {
  total: number;
  concurrency: number;
  /** No call starts after this many ms. */
  maxMs: number;
  /** A call still unsettled this long after it started is LOST (give its deadline plus slack). */
  settleWithinMs: number;
  call(i: number): Promise<T>;
  /** Each worker pauses this long after each call (default 0). */
  paceMs?: number;
}

export const LOST = "LOST";
export const NOT_A_MESH_ERROR = "NOT_A_MESH_ERROR";

export async function runLoad<T>(o: LoadOptions<T>): Promise<CallOutcome<T>[]> {
  const outcomes: CallOutcome<T>[] = [];
  const stopAt = Date.now() + o.maxMs;
  let next = 0;
  const worker = async () => {
    while (next < o.total && Date.now() < stopAt) {
      const i = next++;
      outcomes.push(await settle(i, o));
      if (o.paceMs) await pause(o.paceMs);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return outcomes.sort((a, b) => a.i - b.i);
}

async function settle<T>(i: number, o: LoadOptions<T>): Promise<CallOutcome<T>> {
  const startedAt = Date.now();
  let watchdog: NodeJS.Timeout | undefined;
  const lost = new Promise<typeof LOST>((resolve) => (watchdog = setTimeout(() => resolve(LOST), o.settleWithinMs)));
  try {
    const value = await Promise.race([o.call(i), lost]);
    if (value === LOST) return { i, startedAt, settledAt: Date.now(), ok: false, code: LOST };
    return { i, startedAt, settledAt: Date.now(), ok: true, value: value as T };
  } catch (e) {
    return { i, startedAt, settledAt: Date.now(), ok: false, code: isMeshError(e) ? e.code : NOT_A_MESH_ERROR, error: e };
  } finally {
    clearTimeout(watchdog);
  }
}

/** Failures by code, sorted by code. */
export function failuresByCode(outcomes: readonly CallOutcome<unknown>[]): Record<string, number> {
  const byCode: Record<string, number> = {};
  for (const r of outcomes) if (!r.ok) byCode[r.code!] = (byCode[r.code!] ?? 0) + 1;
  return Object.fromEntries(Object.entries(byCode).sort(([a], [b]) => a.localeCompare(b)));
}

export interface FigureNotes {
  /** After the sent count, e.g. " (400 idempotent)". */
  sent?: string;
  /** After the failures, e.g. " (all non-idempotent)". */
  failed?: string;
  /** More `what N` items at the end. */
  extras?: readonly string[];
}

/** The one-line figure every reliability test prints: `<name>: sent N, ok N, failed {CODE: n}, lost N, ...`. */
export function figure(name: string, outcomes: readonly CallOutcome<unknown>[], notes: FigureNotes = {}): string {
  const failed = failuresByCode(outcomes);
  const lost = failed[LOST] ?? 0;
  delete failed[LOST];
  const codes = Object.entries(failed).map(([code, n]) => `${code}: ${n}`).join(", ");
  const ok = outcomes.filter((r) => r.ok).length;
  return [`${name}: sent ${outcomes.length}${notes.sent ?? ""}`, `ok ${ok}`, `failed {${codes}}${notes.failed ?? ""}`, `lost ${lost}`, ...(notes.extras ?? [])].join(", ");
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
