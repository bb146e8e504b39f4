// The policy document (DESIGN.md, "Policies (control plane)"): its zod schema, the
// type it infers, and the JSON Schema published for editors and tooling.
//
// Decisions, so the document means one thing:
// - Every level is strict: an unknown key is an error, never ignored. A typo such as
//   `alow:` in a security policy must not silently open or close a service. New keys
//   come with new schema versions of this library ("keys may grow, these stay").
// - Caller names in `allow` lists and `rateLimits` must be "*" or an identity of the
//   document (or one the caller of `policySchema` says is registered elsewhere, e.g.
//   with `svcmesh identity add`). A typo there would deny a caller without a word.
// - Two identities may not share a key: a verified key must name exactly one caller.
// - `traffic` keys are exact versions (semver, no "v" prefix, no ranges); weights are
//   finite numbers ≥ 0 and at least one is > 0. Weights are relative, not percentages.
// - An endpoint role that no identity holds, or a data class no identity is cleared
//   for, is legal (the endpoint is then closed to everyone) but reported as a warning
//   by `policyWarnings` (parsePolicy returns those alongside the policy).
// - A service may also carry `timeoutMs`, `retry` and `breaker` (the CallSettingsInput
//   shape), layered over `defaults` for calls to it; DESIGN's example leaves them out.
import semver from "semver";
import { isUserPublicKey } from "../identity/keys.js";
import { z } from "zod";
import { BreakerSettingsInput, CallSettings, RateLimit, RetrySettingsInput } from "../settings.js";
import { RESERVED_NAMES, validEndpointName, validServiceName } from "../subjects.js";

export const POLICY_VERSION = 1;
/** The caller wildcard in `allow` lists and `rateLimits`. */
export const ANY = "*";

// ---- nkey public user keys ------------------------------------------------------

/**
 * Whether `key` is an nkey public *user* key (checked by nkeys.js: prefix, length,
 * CRC-16). One implementation for the policy and the identity code.
 */
export const isNkeyUserPublicKey = isUserPublicKey;

function nkeyMessage(key: string): string {
  if (key.startsWith("S")) return "this is an nkey seed (secret): put only the public key (starting with U) in the policy, and keep the seed out of it";
  if (key.length === 56 && /^[NAOPC]/.test(key)) return `this is an nkey public key of another kind (${key[0]}...): a service identity is a user key, starting with U`;
  return "not an nkey public user key (56 characters A-Z2-7 starting with U, as `svcmesh identity new` prints)";
}

// ---- names ----------------------------------------------------------------------

const LABEL = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/** Service and identity names: as in subjects ([a-z0-9-], not trace/events/audit). */
const Name = z.string().refine(validServiceName, {
  error: (iss) =>
    RESERVED_NAMES.has(iss.input as string)
      ? `"${String(iss.input)}" is reserved for the mesh's own subjects (${[...RESERVED_NAMES].join(", ")})`
      : `invalid name "${String(iss.input)}": use lower-case letters, digits and "-" (at most 64, not starting or ending with "-")`,
});
const EndpointName = z.string().refine(validEndpointName, {
  error: (iss) => `invalid endpoint name "${String(iss.input)}": use letters, digits, "_" and "-" (at most 64)`,
});
/** Role, clearance and data-class labels, e.g. CLAIMS_CLERK, PII, FERPA. */
const Label = z.string().regex(LABEL, "a label starts with a letter and holds letters, digits, _ . : - (at most 64)");
const Caller = z.string().refine((s) => s === ANY || validServiceName(s), {
  error: (iss) => `invalid caller "${String(iss.input)}": "*" or an identity name`,
});

// ---- shapes ---------------------------------------------------------------------

/** Callers allowed: "*" (anyone) or identity names. An empty list allows no one. */
export const AllowList = z.array(Caller);

export const PolicyRateLimit = RateLimit.strict();
export const PolicyRetry = RetrySettingsInput;
export const PolicyBreaker = BreakerSettingsInput;
const TimeoutMs = CallSettings.shape.timeoutMs;

export const PolicyIdentity = z.strictObject({
  /** The nkey public user key the caller's tokens are verified with. */
  key: z.string().refine(isNkeyUserPublicKey, { error: (iss) => nkeyMessage(String(iss.input)) }),
  roles: z.array(Label).optional(),
  clearances: z.array(Label).optional(),
});

export const PolicyDefaults = z.strictObject({
  /** Callers allowed where a service says nothing; absent = ["*"]. */
  allow: AllowList.optional(),
  timeoutMs: TimeoutMs.optional(),
  retry: PolicyRetry.optional(),
  breaker: PolicyBreaker.optional(),
  /** Per caller, per service, where the service names no limit for it. */
  rateLimit: PolicyRateLimit.optional(),
});

export const PolicyEndpoint = z.strictObject({
  /** Replaces the service's allow list for this endpoint. */
  allow: AllowList.optional(),
  /** The caller must hold one of these (none listed = no requirement). */
  roles: z.array(Label).optional(),
  /** The caller must be cleared for this class of data. */
  dataClass: Label.optional(),
  idempotent: z.boolean().optional(),
  timeoutMs: TimeoutMs.optional(),
  /** Bulkhead per instance. */
  maxConcurrent: z.number().int().min(1).optional(),
});

const Version = z.string().refine((v) => semver.valid(v) === v, {
  error: (iss) => `"${String(iss.input)}" is not an exact version (semver such as 2.1.0, no "v", no ranges)`,
});
const Traffic = z.record(Version, z.number().min(0).finite()).superRefine((t, ctx) => {
  if (Object.values(t).reduce((a, b) => a + b, 0) <= 0) {
    ctx.addIssue({ code: "custom", message: "traffic weights must add up to more than 0 (leave traffic out to spread calls over every version)" });
  }
});

export const PolicyService = z.strictObject({
  allow: AllowList.optional(),
  /** Caller name (or "*" for every caller not named) → limit on its calls to this service. */
  rateLimits: z.record(Caller, PolicyRateLimit).optional(),
  /** Exact running version → relative weight. */
  traffic: Traffic.optional(),
  endpoints: z.record(EndpointName, PolicyEndpoint).optional(),
  timeoutMs: TimeoutMs.optional(),
  retry: PolicyRetry.optional(),
  breaker: PolicyBreaker.optional(),
});

export interface PolicySchemaOptions {
  /** Identities registered outside the document (e.g. `svcmesh identity add`) that allow lists may name. */
  knownIdentities?: Iterable<string>;
}

/** The document schema; semantic checks need the identities, hence a factory. */
export function policySchema(options: PolicySchemaOptions = {}) {
  const external = new Set(options.knownIdentities ?? []);
  return z
    .strictObject({
      version: z.literal(POLICY_VERSION, { error: `version must be ${POLICY_VERSION} (the only document version this library reads)` }),
      identities: z.record(Name, PolicyIdentity).optional(),
      defaults: PolicyDefaults.optional(),
      services: z.record(Name, PolicyService).optional(),
    })
    .superRefine((doc, ctx) => {
      const ids = doc.identities ?? {};
      const known = (name: string) => name === ANY || Object.hasOwn(ids, name) || external.has(name);
      const unknown = (path: PropertyKey[], name: string, at?: "key") =>
        ctx.addIssue({
          code: "custom",
          path,
          ...(at ? { params: { at } } : {}),
          message: `unknown caller "${name}": not an identity of this document (add it under identities, or use "*")`,
        });
      const byKey = new Map<string, string>();
      for (const [name, id] of Object.entries(ids)) {
        const other = byKey.get(id.key);
        if (other !== undefined) ctx.addIssue({ code: "custom", path: ["identities", name, "key"], message: `the same key as identity "${other}": a key must name one caller` });
        else byKey.set(id.key, name);
      }
      (doc.defaults?.allow ?? []).forEach((c, i) => known(c) || unknown(["defaults", "allow", i], c));
      for (const [s, svc] of Object.entries(doc.services ?? {})) {
        (svc.allow ?? []).forEach((c, i) => known(c) || unknown(["services", s, "allow", i], c));
        for (const c of Object.keys(svc.rateLimits ?? {})) if (!known(c)) unknown(["services", s, "rateLimits", c], c, "key");
        for (const [e, ep] of Object.entries(svc.endpoints ?? {})) {
          (ep.allow ?? []).forEach((c, i) => known(c) || unknown(["services", s, "endpoints", e, "allow", i], c));
        }
      }
    });
}

/** The schema with no identities registered outside the document. */
export const PolicyDocumentSchema = policySchema();

export type PolicyDocument = z.infer<typeof PolicyDocumentSchema>;
export type PolicyIdentity = z.infer<typeof PolicyIdentity>;
export type PolicyDefaults = z.infer<typeof PolicyDefaults>;
export type PolicyService = z.infer<typeof PolicyService>;
export type PolicyEndpoint = z.infer<typeof PolicyEndpoint>;

/** The JSON Schema of the document (draft 2020-12), for editors and `svcmesh policy schema`. */
export function policyJsonSchema(): Record<string, unknown> {
  const s = z.toJSONSchema(PolicyDocumentSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return { ...s, title: "svcmesh policy document", $id: "https://svcmesh.dev/schemas/policy-v1.json" };
}

// ---- warnings -------------------------------------------------------------------

export interface PolicyWarning {
  path: (string | number)[];
  message: string;
}

/** Legal but probably unintended: endpoints no identity can reach by role or clearance. */
export function policyWarnings(doc: PolicyDocument): PolicyWarning[] {
  const out: PolicyWarning[] = [];
  const ids = Object.values(doc.identities ?? {});
  const roles = new Set(ids.flatMap((i) => i.roles ?? []));
  const clearances = new Set(ids.flatMap((i) => i.clearances ?? []));
  for (const [s, svc] of Object.entries(doc.services ?? {})) {
    for (const [e, ep] of Object.entries(svc.endpoints ?? {})) {
      const base = ["services", s, "endpoints", e];
      if (ep.roles && ep.roles.length > 0 && !ep.roles.some((r) => roles.has(r))) {
        out.push({ path: [...base, "roles"], message: `no identity holds any of the roles ${ep.roles.join(", ")}: ${s}.${e} is closed to every caller` });
      }
      if (ep.dataClass !== undefined && !clearances.has(ep.dataClass)) {
        out.push({ path: [...base, "dataClass"], message: `no identity is cleared for ${ep.dataClass}: ${s}.${e} is closed to every caller` });
      }
      if (ep.allow && ep.allow.length > 1 && ep.allow.includes(ANY)) out.push({ path: [...base, "allow"], message: `"*" already allows every caller; the names beside it have no effect` });
    }
    if (svc.allow && svc.allow.length > 1 && svc.allow.includes(ANY)) out.push({ path: ["services", s, "allow"], message: `"*" already allows every caller; the names beside it have no effect` });
  }
  return out;
}
