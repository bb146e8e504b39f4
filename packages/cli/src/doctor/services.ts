// Doctor checks of the running services (discovery, $SRV.INFO) against each other and
// the policy: instances configured alike (rate limits per major, bulkheads per version),
// the services the policy names running, running services covered by its rules, and
// registered under their names.
import type { ServiceInfo } from "nats";
import { ANY, instanceFromInfo, type PolicyDocument, policyMaxConcurrent, policyRateLimits, settingsFor } from "svcmesh/internal";
import { plural } from "../output.js";
import type { PolicyView } from "./policy.js";
import { error, type Finding, info, ok, skipped, warn } from "./report.js";


/** The svcmesh instances among `infos`, by id. */
export function meshInstances(infos: readonly ServiceInfo[]): ServiceInfo[] {
  return infos.filter((i) => instanceFromInfo(i) !== undefined).sort((a, b) => a.id.localeCompare(b.id));
}

export function servicesFinding(instances: readonly ServiceInfo[], waitMs: number): Finding {
  const names = [...new Set(instances.map((i) => i.name))].sort();
  if (names.length === 0) return info("services", `no svcmesh service answered $SRV.INFO within ${waitMs} ms`);
  return ok("services", `${plural(names.length, "service")} running (${plural(instances.length, "instance")}): ${names.join(", ")}`);
}

/** Rate limits as a comparable text: the published JSON with its keys sorted, or "none". */
function limitsKey(info: ServiceInfo): string {
  const text = info.metadata?.rate_limits;
  if (!text) return "none";
  try {
    const v = JSON.parse(text) as Record<string, Record<string, unknown>>;
    return Object.keys(v).sort().map((caller) => `${caller} ${String(v[caller]?.rps)}/s burst ${String(v[caller]?.burst)}`).join(", ");
  } catch {
    return `unreadable: ${text}`;
  }
}

function bulkheads(info: ServiceInfo): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of info.endpoints ?? []) out.set(e.name, e.metadata?.max_concurrent ?? "none");
  return out;
}

/** "a, b: X; c: Y" for the instances grouped by their value. */
function byValue(values: ReadonlyMap<string, string>): string {
  const groups = new Map<string, string[]>();
  for (const [id, v] of values) groups.set(v, [...(groups.get(v) ?? []), id]);
  return [...groups].map(([v, ids]) => `${ids.join(", ")}: ${v}`).join("; ");
}

/** Instances grouped by `key`, groups sorted by key. */
function groupBy(instances: readonly ServiceInfo[], key: (i: ServiceInfo) => string): [string, ServiceInfo[]][] {
  const groups = new Map<string, ServiceInfo[]>();
  for (const i of instances) groups.set(key(i), [...(groups.get(key(i)) ?? []), i]);
  return [...groups].sort(([a], [b]) => a.localeCompare(b));
}

/**
 * Instances should be configured alike (the README says so). Rate limits: each instance
 * enforces its share (1/N) of its own limits, N counting the instances of its major
 * (they share one queue group), so those must agree. Bulkheads hold per instance: the
 * instances of one version should agree. What the policy sets overrides code in every
 * instance, so differences it covers do not matter.
 */
export function limitsFindings(instances: readonly ServiceInfo[], policy: PolicyDocument | undefined): Finding[] {
  if (instances.length === 0) return [skipped("limits", "no service is running")];
  const out: Finding[] = [];
  const settings = (service: string) => (policy ? settingsFor(policy, service) : undefined);
  let compared = 0;
  for (const [lane, list] of groupBy(instances, (i) => `${i.name} v${i.version.split(".")[0]}`)) {
    if (list.length < 2) continue;
    compared++;
    const service = list[0]!.name;
    const limits = new Map(list.map((i) => [i.id, limitsKey(i)]));
    if (new Set(limits.values()).size <= 1) continue;
    const versions = [...new Set(list.map((i) => i.version))].sort().join(", ");
    if (policyRateLimits(settings(service)) !== undefined) {
      out.push(info(`rate limits ${lane}`, `its instances (${versions}) differ in code (${byValue(limits)}), but the policy's rate limits for ${service} hold in all of them`));
    } else {
      out.push(warn(`rate limits ${lane}`, `its ${list.length} instances (${versions}) publish different rate limits (${byValue(limits)}): each enforces its share (1/${list.length}) of its own, so ${service} as a whole enforces none of them`,
        `configure every instance alike, or set services.${service}.rateLimits in the policy, which overrides code`));
    }
  }
  for (const [key, list] of groupBy(instances, (i) => `${i.name}@${i.version}`)) {
    if (list.length < 2) continue;
    compared++;
    const service = list[0]!.name;
    const fromPolicy = settings(service);
    const perInstance = list.map((i) => [i.id, bulkheads(i)] as const);
    const differ: string[] = [];
    const covered: string[] = [];
    for (const e of [...new Set(perInstance.flatMap(([, m]) => [...m.keys()]))].sort()) {
      const values = new Map(perInstance.map(([id, m]) => [id, m.get(e) ?? "not served"]));
      if (new Set(values.values()).size <= 1) continue;
      (policyMaxConcurrent(fromPolicy, e) !== undefined ? covered : differ).push(`${e} (${byValue(values)})`);
    }
    if (differ.length > 0) {
      out.push(warn(`bulkheads ${key}`, `its ${list.length} instances cap concurrent calls differently: ${differ.join("; ")}`,
        `configure every instance alike, or set services.${service}.endpoints.<name>.maxConcurrent in the policy, which overrides code`));
    } else if (covered.length > 0) {
      out.push(info(`bulkheads ${key}`, `its instances differ in code (${covered.join("; ")}), but the policy's maxConcurrent holds in all of them`));
    }
  }
  if (out.length === 0) out.push(ok("limits", compared === 0 ? "no service runs more than one instance" : "instances agree on rate limits (per major version) and bulkheads (per version)"));
  return out;
}

/** Services the policy names that nobody runs; running services its allow lists leave open. */
export function coverageFindings(instances: readonly ServiceInfo[], policy: PolicyView): Finding[] {
  if ("why" in policy) return [skipped("policy services", policy.why)];
  const doc = policy.stored?.policy;
  if (!doc) return [skipped("policy services", "no policy applied")];
  const running = new Set(instances.map((i) => i.name));
  const named = Object.keys(doc.services ?? {}).sort();
  const out: Finding[] = [];
  for (const s of named.filter((n) => !running.has(n))) {
    out.push(warn(`policy service ${s}`, `the policy has rules for ${s}, but no instance of it is running`, `start ${s}, or take services.${s} out of the policy (a misspelt service name looks like this too)`));
  }
  if (out.length === 0) out.push(ok("policy services", named.length === 0 ? "the policy names no services" : `every service the policy names is running (${named.join(", ")})`));
  const services = Object.values(doc.services ?? {});
  const allowLists = doc.defaults?.allow !== undefined || services.some((s) => s.allow !== undefined || Object.values(s.endpoints ?? {}).some((e) => e.allow !== undefined));
  if (!allowLists) return out;
  const unruled = [...running].filter((n) => !Object.hasOwn(doc.services ?? {}, n)).sort();
  if (unruled.length === 0) out.push(ok("rules", running.size === 0 ? "no service is running to check" : "every running service has its rule in the policy"));
  for (const s of unruled) {
    const d = doc.defaults?.allow;
    out.push(d === undefined
      ? warn(`rules for ${s}`, `the policy restricts callers of other services, but has no rule for ${s} and no defaults.allow: every caller may call it`, `add services.${s}.allow (or defaults.allow) to the policy`)
      : info(`rules for ${s}`, `the policy has no rule for ${s}: defaults.allow decides who may call it (${d.length === 0 ? "no one" : d.includes(ANY) ? "anyone" : d.join(", ")})`));
  }
  return out;
}

/** With identities registered, every caller needs one: the services' names must be among them. */
export function identityFindings(instances: readonly ServiceInfo[], policy: PolicyView): Finding[] {
  if ("why" in policy) return [skipped("identities", policy.why)];
  const doc = policy.stored?.policy;
  if (!doc) return [skipped("identities", "no policy applied: callers are not authenticated")];
  const ids = doc.identities ?? {};
  if (Object.keys(ids).length === 0) return [skipped("identities", "the policy registers none: callers are not authenticated, their names are taken as given")];
  const running = [...new Set(instances.map((i) => i.name))].sort();
  const out: Finding[] = [];
  for (const s of running.filter((n) => !Object.hasOwn(ids, n))) {
    out.push(error(`identity ${s}`, `${s} is running, but the policy registers no identity ${s}: its calls (as ${s}) are refused UNAUTHENTICATED`,
      `svcmesh identity new ${s}, give ${s} the seed (SVCMESH_SEED), then svcmesh identity add ${s} <its public key>`));
  }
  if (out.length === 0) {
    out.push(ok("identities", running.length === 0 ? "no service is running to check" : `every running service has a registered identity (${running.join(", ")}; names only: seeds cannot be checked from here)`));
  }
  return out;
}
