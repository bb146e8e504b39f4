// Times on the command line and on screen, shared by the commands that read the
// mesh's history or tail it live (events, audit, watch, top).
import { InvalidArgumentError } from "commander";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Commander parser for `--since <when>`: a duration ago (30s, 15m, 1h, 2d) or an ISO date → ms since the epoch. */
export function parseSince(value: string): number {
  const rel = /^(\d+)(ms|s|m|h|d)$/.exec(value.trim());
  if (rel) return Date.now() - Number(rel[1]) * UNIT_MS[rel[2]!]!;
  const at = /^\d{4}-\d{2}-\d{2}/.test(value.trim()) ? Date.parse(value) : NaN;
  if (!Number.isFinite(at)) throw new InvalidArgumentError("expected a duration such as 30s, 15m, 1h, 2d, or an ISO date.");
  return at;
}

/** A duration for people: 0.42ms, 1.23ms, 250.00ms, 1.50s. */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(2)}ms` : `${(ms / 1000).toFixed(2)}s`;
}
