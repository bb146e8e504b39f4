// Authorization decisions and settings from a policy document: pure functions, no I/O.
//
// Rules, most specific first (the first list that exists is the one that holds; lists
// replace, they do not intersect, so an endpoint may be opened wider or narrower than
// its service):
//   allow:  endpoint.allow → service.allow → defaults.allow → ["*"]
//   roles:  endpoint.roles: the caller's identity must hold at least one (absent or
//           empty: no requirement)
//   data:   endpoint.dataClass: the caller's identity must list it in clearances
// "*" matches any caller name, also one without an identity entry (its identity was
// verified elsewhere, e.g. `svcmesh identity add`); such a caller holds no roles and no
// clearances. A service the policy does not name gets the defaults; an endpoint it does
// not name gets the service's allow list and no role or data-class requirement.
// Whether a policy is in force at all is the caller of this module's business: a mesh
// with no policy applied is open.
import type { CallSettingsInput, RateLimit } from "../settings.js";
import { ANY, type PolicyDocument } from "./schema.js";

export type AuthDecision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

export interface Authorizer {
  /** O(1): a few Map and Set lookups; allocates only when it denies. */
  check(caller: string, service: string, endpoint: string): AuthDecision;
}

const ALLOWED: AuthDecision = Object.freeze({ allowed: true as const });

interface AllowSet {
  readonly any: boolean;
  readonly names: ReadonlySet<string>;
  /** Where the list came from, for reasons: "defaults.allow", "services.payments.allow". */
  readonly from: string;
}

interface Rule {
  readonly allow: AllowSet;
  readonly roles: readonly string[] | undefined;
  readonly dataClass: string | undefined;
}

interface ServiceRules {
  readonly base: Rule;
  readonly endpoints: ReadonlyMap<string, Rule>;
}

interface Grants {
  readonly roles: ReadonlySet<string>;
  readonly clearances: ReadonlySet<string>;
}

const NO_GRANTS: Grants = { roles: new Set(), clearances: new Set() };
const NO_ENDPOINTS: ReadonlyMap<string, Rule> = new Map();

function allowSet(list: readonly string[] | undefined, from: string, fallback: AllowSet): AllowSet {
  if (list === undefined) return fallback;
  return { any: list.includes(ANY), names: new Set(list.filter((c) => c !== ANY)), from };
}

function describeAllow(a: AllowSet): string {
  return a.names.size === 0 ? "no caller" : [...a.names].join(", ");
}

interface Compiled {
  readonly grants: ReadonlyMap<string, Grants>;
  readonly defaults: ServiceRules;
  readonly services: ReadonlyMap<string, ServiceRules>;
}

function compile(policy: PolicyDocument): Compiled {
  const grants = new Map<string, Grants>();
  for (const [name, id] of Object.entries(policy.identities ?? {})) {
    grants.set(name, { roles: new Set(id.roles ?? []), clearances: new Set(id.clearances ?? []) });
  }
  const open: AllowSet = { any: true, names: new Set(), from: "the default (no allow list anywhere)" };
  const defaultAllow = allowSet(policy.defaults?.allow, "defaults.allow", open);
  const defaults: ServiceRules = { base: { allow: defaultAllow, roles: undefined, dataClass: undefined }, endpoints: NO_ENDPOINTS };

  const services = new Map<string, ServiceRules>();
  for (const [s, svc] of Object.entries(policy.services ?? {})) {
    const allow = allowSet(svc.allow, `services.${s}.allow`, defaultAllow);
    const endpoints = new Map<string, Rule>();
    for (const [e, ep] of Object.entries(svc.endpoints ?? {})) {
      endpoints.set(e, {
        allow: allowSet(ep.allow, `services.${s}.endpoints.${e}.allow`, allow),
        roles: ep.roles && ep.roles.length > 0 ? [...ep.roles] : undefined,
        dataClass: ep.dataClass,
      });
    }
    services.set(s, { base: { allow, roles: undefined, dataClass: undefined }, endpoints });
  }
  return { grants, defaults, services };
}

export function compileAuthorizer(policy: PolicyDocument): Authorizer {
  const { grants, defaults, services } = compile(policy);
  return {
    check(caller, service, endpoint) {
      const svc = services.get(service) ?? defaults;
      return decide(grants, svc.endpoints.get(endpoint) ?? svc.base, caller, service, endpoint);
    },
  };
}

function decide(grants: ReadonlyMap<string, Grants>, rule: Rule, caller: string, service: string, endpoint: string): AuthDecision {
  if (!rule.allow.any && !rule.allow.names.has(caller)) {
    return { allowed: false, reason: `caller "${caller}" may not call ${service}.${endpoint}: ${rule.allow.from} allows ${describeAllow(rule.allow)}` };
  }
  if (rule.roles === undefined && rule.dataClass === undefined) return ALLOWED;
  const g = grants.get(caller) ?? NO_GRANTS;
  if (rule.roles !== undefined) {
    let ok = false;
    for (const r of rule.roles) {
      if (g.roles.has(r)) {
        ok = true;
        break;
      }
    }
    if (!ok) return { allowed: false, reason: `caller "${caller}" may not call ${service}.${endpoint}: it requires one of the roles ${rule.roles.join(", ")}, which "${caller}" does not hold` };
  }
  if (rule.dataClass !== undefined && !g.clearances.has(rule.dataClass)) {
    return { allowed: false, reason: `caller "${caller}" may not call ${service}.${endpoint}: it handles ${rule.dataClass} data, and "${caller}" is not cleared for ${rule.dataClass}` };
  }
  return ALLOWED;
}

/** What `caller` may call on one target service, for broker permissions. */
export type CallGrant =
  /** Every endpoint except those listed (endpoints the policy names and closes to this caller). */
  | { all: true; except: string[] }
  /** Only these endpoints (the ones the policy names and opens to this caller). */
  | { all: false; only: string[] };

/**
 * Per target service, what `caller` may call: the same decisions as `check`, taken
 * ahead for every endpoint the policy names and for "any other endpoint". Targets are
 * the services and identities of the document plus `targets` (services known from
 * elsewhere, e.g. discovery; they get the defaults). Targets the caller may call
 * nothing of are left out. This is what a broker configuration (publish permissions
 * per endpoint subject) is generated from.
 */
export function callGrants(policy: PolicyDocument, caller: string, targets: Iterable<string> = []): Record<string, CallGrant> {
  const { grants, defaults, services } = compile(policy);
  const names = new Set([...Object.keys(policy.services ?? {}), ...Object.keys(policy.identities ?? {}), ...targets]);
  const out: Record<string, CallGrant> = {};
  for (const target of [...names].sort()) {
    const svc = services.get(target) ?? defaults;
    const base = decide(grants, svc.base, caller, target, "*").allowed;
    const differ: string[] = [];
    for (const [e, rule] of svc.endpoints) if (decide(grants, rule, caller, target, e).allowed !== base) differ.push(e);
    differ.sort();
    if (base) out[target] = { all: true, except: differ };
    else if (differ.length > 0) out[target] = { all: false, only: differ };
  }
  return out;
}

// ---- settings -----------------------------------------------------------------

export interface PolicyEndpointSettings {
  /** The call settings for this endpoint: the service's, with the endpoint's timeoutMs over them. */
  call: CallSettingsInput;
  idempotent?: boolean;
  maxConcurrent?: number;
}

export interface PolicyServiceSettings {
  /** For calls to the service: defaults ← service (timeoutMs, retry, breaker). */
  call: CallSettingsInput;
  /**
   * Per-caller limits the callee enforces (the `rateLimits` shape of `serve()`): the
   * service's own, with `defaults.rateLimit` as "*" where the service sets no "*".
   * Empty: no limit.
   */
  rateLimits: Record<string, RateLimit>;
  /** Endpoints the policy names, with their overrides. */
  endpoints: Record<string, PolicyEndpointSettings>;
  /** Version → weight, if the policy splits traffic for this service. */
  traffic?: Record<string, number>;
}

function layer(...layers: (CallSettingsInput | undefined)[]): CallSettingsInput {
  const out: CallSettingsInput = {};
  for (const l of layers) {
    if (!l) continue;
    if (l.timeoutMs !== undefined) out.timeoutMs = l.timeoutMs;
    if (l.retry) out.retry = { ...out.retry, ...definedOnly(l.retry) };
    if (l.breaker) out.breaker = { ...out.breaker, ...definedOnly(l.breaker) };
  }
  return out;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The settings the policy gives `service`, in the typed shapes code uses
 * (`CallSettingsInput`, `RateLimit`), for layering over code defaults with
 * `mergeCallSettings` (the policy in force overrides code defaults). Fields the policy
 * leaves out stay out, so code settings show through.
 */
export function settingsFor(policy: PolicyDocument, service: string): PolicyServiceSettings {
  const d = policy.defaults;
  const svc = Object.hasOwn(policy.services ?? {}, service) ? policy.services![service] : undefined;
  const call = layer(
    d && { timeoutMs: d.timeoutMs, retry: d.retry, breaker: d.breaker },
    svc && { timeoutMs: svc.timeoutMs, retry: svc.retry, breaker: svc.breaker },
  );
  const rateLimits: Record<string, RateLimit> = {};
  if (d?.rateLimit) rateLimits[ANY] = { ...d.rateLimit };
  for (const [caller, l] of Object.entries(svc?.rateLimits ?? {})) rateLimits[caller] = { ...l };
  const endpoints: Record<string, PolicyEndpointSettings> = {};
  for (const [e, ep] of Object.entries(svc?.endpoints ?? {})) {
    const s: PolicyEndpointSettings = { call: layer(call, { timeoutMs: ep.timeoutMs }) };
    if (ep.idempotent !== undefined) s.idempotent = ep.idempotent;
    if (ep.maxConcurrent !== undefined) s.maxConcurrent = ep.maxConcurrent;
    endpoints[e] = s;
  }
  const out: PolicyServiceSettings = { call, rateLimits, endpoints };
  if (svc?.traffic) out.traffic = { ...svc.traffic };
  return out;
}

/**
 * The per-caller limits the policy sets for a service, or undefined when it sets none.
 * When it sets any they replace the code's whole, on the callee (server/service.ts), in
 * the caller's mirror (mesh.ts) and in what `svcmesh info` shows: a caller they do not
 * name is not limited.
 */
export function policyRateLimits(settings: PolicyServiceSettings | undefined): Record<string, RateLimit> | undefined {
  return settings && Object.keys(settings.rateLimits).length > 0 ? settings.rateLimits : undefined;
}

/** The bulkhead the policy sets for an endpoint (it replaces the code's), or undefined. */
export function policyMaxConcurrent(settings: PolicyServiceSettings | undefined, endpoint: string): number | undefined {
  return settings && Object.hasOwn(settings.endpoints, endpoint) ? settings.endpoints[endpoint]!.maxConcurrent : undefined;
}

/** The limit on `caller`'s calls to `service`: its own entry, else the service's "*", else defaults.rateLimit. */
export function rateLimitFor(policy: PolicyDocument, service: string, caller: string): RateLimit | undefined {
  const svc = Object.hasOwn(policy.services ?? {}, service) ? policy.services![service] : undefined;
  const limits = svc?.rateLimits;
  if (limits && Object.hasOwn(limits, caller)) return limits[caller];
  if (limits && Object.hasOwn(limits, ANY)) return limits[ANY];
  return policy.defaults?.rateLimit;
}
