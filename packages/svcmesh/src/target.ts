// Target strings (`payments`, `payments@2`, `payments@^2.1`, `payments@2.1.0`) and
// how one is resolved against the versions actually running.
import semver from "semver";
import { MeshError } from "./errors.js";
import type { RateLimit } from "./settings.js";
import { exactLane, majorLane, validServiceName } from "./subjects.js";

export interface Target {
  /** The text the user wrote, for error messages. */
  text: string;
  service: string;
  /** A semver range, or undefined for "the highest major running". */
  range: string | undefined;
}

export interface RunningInstance {
  id: string;
  version: string;
  endpoints: readonly string[];
  /** Endpoints this instance declares idempotent (safe to retry after a timeout). */
  idempotent?: readonly string[];
  /** The service's per-caller rate limits as this instance publishes them. */
  rateLimits?: Readonly<Record<string, RateLimit>>;
}

/** Where a call to a target goes: one lane (subject prefix) and the endpoints served there. */
export interface Route {
  lane: string;
  major: number;
  endpoints: ReadonlySet<string>;
  /** Endpoints every instance on the lane declares idempotent. */
  idempotent: ReadonlySet<string>;
  rateLimits: Readonly<Record<string, RateLimit>> | undefined;
  versions: readonly string[];
}

export function parseTarget(text: string): Target {
  if (typeof text !== "string" || text.length === 0) {
    throw new MeshError("BAD_REQUEST", "target must be a non-empty string like \"payments@^2\"");
  }
  const at = text.indexOf("@");
  const service = at < 0 ? text : text.slice(0, at);
  const rangeText = at < 0 ? undefined : text.slice(at + 1);
  if (!validServiceName(service)) {
    throw new MeshError("BAD_REQUEST", `invalid service name in target ${JSON.stringify(text)}`);
  }
  if (rangeText !== undefined && (rangeText.trim() === "" || semver.validRange(rangeText) === null)) {
    throw new MeshError("BAD_REQUEST", `invalid version range in target ${JSON.stringify(text)}`);
  }
  return { text, service, range: rangeText };
}

/**
 * Picks the lane for a target. Among running versions that satisfy the range, the
 * highest major wins. If every running instance of that major satisfies the range,
 * the call goes to the major lane, load-balanced over all of them; otherwise to the
 * exact lane of the highest satisfying version, so an instance outside the range is
 * never reached.
 */
export function resolveRoute(target: Target, running: readonly RunningInstance[]): Route {
  if (running.length === 0) {
    throw new MeshError("NO_RESPONDERS", `no instance of ${target.service} is running`);
  }
  const matching = target.range === undefined
    ? running
    : running.filter((i) => semver.satisfies(i.version, target.range!, { includePrerelease: true }));
  if (matching.length === 0) {
    const versions = [...new Set(running.map((i) => i.version))].sort(semver.rcompare);
    throw new MeshError("NOT_FOUND", `no running version of ${target.service} matches ${target.range} (running: ${versions.join(", ")})`, {
      details: { service: target.service, range: target.range, running: versions },
    });
  }
  const major = Math.max(...matching.map((i) => semver.major(i.version)));
  const inMajor = matching.filter((i) => semver.major(i.version) === major);
  const wholeMajor = running.filter((i) => semver.major(i.version) === major);
  const versions = [...new Set(inMajor.map((i) => i.version))].sort(semver.rcompare);
  if (inMajor.length === wholeMajor.length) return routeOver(majorLane(target.service, major), major, inMajor, versions);
  const best = versions[0]!;
  return routeOver(exactLane(target.service, best), major, inMajor.filter((i) => i.version === best), [best]);
}

function routeOver(lane: string, major: number, instances: readonly RunningInstance[], versions: readonly string[]): Route {
  const endpoints = new Set<string>();
  for (const i of instances) for (const e of i.endpoints) endpoints.add(e);
  // Idempotent only if every instance that may receive the call says so.
  const idempotent = new Set([...endpoints].filter((e) => instances.every((i) => !i.endpoints.includes(e) || i.idempotent?.includes(e))));
  const newest = [...instances].sort((a, b) => semver.rcompare(a.version, b.version))[0];
  return { lane, major, endpoints, idempotent, rateLimits: newest?.rateLimits, versions };
}

/** Canary split: exact-version lanes with cumulative weights, picked per call. */
export interface WeightedLanes {
  lanes: readonly string[];
  versions: readonly string[];
  /** Cumulative weights, last = total. */
  cumulative: readonly number[];
}

/**
 * The weighted lanes for a route, from the policy's traffic weights (version → weight):
 * only running versions of the route's major that satisfy the target's range and have a
 * weight above 0 take part. Undefined when none does (the route's own lane then holds).
 */
export function weightedLanes(target: Target, route: Route, running: readonly RunningInstance[], traffic: Readonly<Record<string, number>> | undefined): WeightedLanes | undefined {
  if (!traffic) return undefined;
  const versions = [...new Set(running.map((i) => i.version))]
    .filter((v) => semver.major(v) === route.major && (target.range === undefined || semver.satisfies(v, target.range, { includePrerelease: true })))
    .filter((v) => (traffic[v] ?? 0) > 0)
    .sort(semver.compare);
  if (versions.length === 0) return undefined;
  let total = 0;
  const cumulative = versions.map((v) => (total += traffic[v]!));
  return { lanes: versions.map((v) => exactLane(target.service, v)), versions, cumulative };
}

/** Picks a lane index for `r` in [0, 1). */
export function pickLane(w: WeightedLanes, r: number): number {
  const x = r * w.cumulative[w.cumulative.length - 1]!;
  let i = 0;
  while (i < w.cumulative.length - 1 && x >= w.cumulative[i]!) i++;
  return i;
}
