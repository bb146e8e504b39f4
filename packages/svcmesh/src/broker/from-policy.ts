// A policy document → the BrokerPlan the nats-server authorization block is generated
// from (nats-config.ts), so the broker refuses what the policy forbids. Pure: no I/O.
//
// Decisions:
// - One nkey user per name the policy knows as a caller or a service: every identity
//   (with its key) and every service under `services:`. A service with no identity has
//   no key to connect with: an error, unless `keys` supplies one (the CLI's
//   `--generate-keys` makes a key pair for it). A key never comes from anywhere else.
// - What a user may publish comes from `callGrants(policy, name)`, i.e. the same
//   decisions the library takes (allow lists, roles, data classes of the caller's
//   identity): a target it may call wholly → `["*"]`; only some named endpoints → those.
// - "Every endpoint except the ones the policy names and closes to this caller" cannot
//   be written as an allow list without knowing the endpoints the policy does not name.
//   Default (`unnamedEndpoints: "closed"`): grant exactly the endpoints the policy names
//   and leaves open to the caller; endpoints the policy does not name are then CLOSED
//   at the broker for that caller (fail closed; name them, e.g. `endpoints: { x: {} }`,
//   to open them: an endpoint entry with no allow list inherits the service's).
//   `brokerPlanNotes` lists each such case. `"open"` grants `["*"]` instead: endpoints
//   the policy does not name inherit the service rule, but so do the closed ones at the
//   broker, which then only the library (callee side) refuses.
// - Callers the policy allows by "*" without listing them as identities (registered
//   with `svcmesh identity add`) get no broker user: a user needs a key the document
//   (or `keys`) gives.
import { callGrants, type CallGrant } from "../policy/authorize.js";
import type { PolicyDocument } from "../policy/schema.js";
import { type BrokerPlan, type BrokerService, BrokerPlanError, checkBrokerPlan } from "./nats-config.js";

export interface BrokerPlanFromPolicyOptions {
  /** Unrestricted users (the `svcmesh` CLI, dashboards): name → nkey public user key. */
  operators?: Record<string, { key: string }>;
  /** Which services a service may discover (see BrokerPlan.discovery); default "callees". */
  discovery?: "callees" | "all";
  /** The KV bucket the policy lives in (BrokerPlan.policyBucket: default svcmesh_policies, null none). */
  policyBucket?: string | null;
  /** Events stream (BrokerPlan.eventsStream). */
  eventsStream?: string | null;
  /**
   * Public keys for services the policy names without an identity (e.g. keys the CLI
   * generated). A name that has an identity keeps the identity's key: giving another
   * one here is an error.
   */
  keys?: Record<string, string>;
  /** What a caller allowed a whole service, with named exceptions, gets: see the header. Default "closed". */
  unnamedEndpoints?: "closed" | "open";
}

/** A policy that cannot become a broker plan; `issues` names every problem. */
export class PolicyBrokerError extends BrokerPlanError {
  constructor(issues: string[]) {
    super(issues);
    this.name = "PolicyBrokerError";
    this.message = `cannot make a broker config from the policy: ${issues.join("; ")}`;
  }
}

/** Every user name of the plan: identities and services, sorted. */
export function brokerUserNames(policy: PolicyDocument): string[] {
  return [...new Set([...Object.keys(policy.identities ?? {}), ...Object.keys(policy.services ?? {})])].sort();
}

/** Services under `services:` with no identity (so no key): what `--generate-keys` makes keys for. */
export function servicesWithoutKeys(policy: PolicyDocument): string[] {
  const ids = policy.identities ?? {};
  return Object.keys(policy.services ?? {})
    .filter((s) => !Object.hasOwn(ids, s))
    .sort();
}

/** A grant as the endpoint list of BrokerService.calls; undefined: nothing to grant. */
function endpointsOf(policy: PolicyDocument, target: string, grant: CallGrant, mode: "closed" | "open"): string[] | undefined {
  if (!grant.all) return grant.only.length > 0 ? [...grant.only] : undefined;
  if (grant.except.length === 0 || mode === "open") return ["*"];
  const named = Object.keys(policy.services?.[target]?.endpoints ?? {});
  const open = named.filter((e) => !grant.except.includes(e)).sort();
  return open.length > 0 ? open : undefined;
}

/**
 * The broker plan for a (parsed, valid) policy document. Throws PolicyBrokerError
 * listing every service with no key, and every problem checkBrokerPlan finds.
 */
export function brokerPlanFromPolicy(policy: PolicyDocument, options: BrokerPlanFromPolicyOptions = {}): BrokerPlan {
  const mode = options.unnamedEndpoints ?? "closed";
  const ids = policy.identities ?? {};
  const extraKeys = options.keys ?? {};
  const issues: string[] = [];
  const services: Record<string, BrokerService> = {};
  for (const [name, key] of Object.entries(extraKeys)) {
    if (Object.hasOwn(ids, name) && ids[name]!.key !== key) issues.push(`keys.${name}: identity "${name}" has its key in the policy already`);
  }
  for (const name of brokerUserNames(policy)) {
    const key = Object.hasOwn(ids, name) ? ids[name]!.key : Object.hasOwn(extraKeys, name) ? extraKeys[name] : undefined;
    if (key === undefined) {
      issues.push(`services.${name}: no identity, so no key to connect with (add identities.${name}.key, e.g. from \`svcmesh identity new ${name}\`, or generate one with --generate-keys)`);
      continue;
    }
    const calls: Record<string, string[]> = {};
    for (const [target, grant] of Object.entries(callGrants(policy, name))) {
      const eps = endpointsOf(policy, target, grant, mode);
      if (eps) calls[target] = eps;
    }
    services[name] = Object.keys(calls).length > 0 ? { key, calls } : { key };
  }
  if (issues.length > 0) throw new PolicyBrokerError(issues);
  const plan: BrokerPlan = { services };
  if (options.operators && Object.keys(options.operators).length > 0) plan.operators = options.operators;
  if (options.discovery !== undefined) plan.discovery = options.discovery;
  if (options.policyBucket !== undefined) plan.policyBucket = options.policyBucket;
  if (options.eventsStream !== undefined) plan.eventsStream = options.eventsStream;
  try {
    checkBrokerPlan(plan);
  } catch (e) {
    if (e instanceof BrokerPlanError) throw new PolicyBrokerError(e.issues);
    throw e;
  }
  return plan;
}

/**
 * Where the broker plan is narrower than the policy (default mode "closed"): a caller
 * allowed every endpoint of a service except some the policy names is granted only the
 * named open ones; each line says which caller loses which unnamed endpoints. Empty in
 * "open" mode (where the broker is wider instead: the closed named endpoints).
 */
export function brokerPlanNotes(policy: PolicyDocument, options: Pick<BrokerPlanFromPolicyOptions, "unnamedEndpoints"> = {}): string[] {
  const mode = options.unnamedEndpoints ?? "closed";
  const notes: string[] = [];
  if (brokerUserNames(policy).length === 0) {
    notes.push("the policy names no identities and no services: the block has no service user, so only operators (and users defined elsewhere) can connect; add identities (svcmesh identity new, then identity add)");
  }
  for (const name of brokerUserNames(policy)) {
    for (const [target, grant] of Object.entries(callGrants(policy, name))) {
      if (!grant.all || grant.except.length === 0) continue;
      const closed = grant.except.join(", ");
      if (mode === "open") {
        notes.push(`${name} → ${target}: the broker lets ${name} publish to every endpoint of ${target}, also ${closed}, which the policy closes to it (only the library refuses those)`);
      } else {
        const open = endpointsOf(policy, target, grant, mode);
        notes.push(
          `${name} → ${target}: the policy allows ${name} every endpoint of ${target} except ${closed}; the broker grants only the endpoints the policy names${open ? ` (${open.join(", ")})` : " (none)"}: name any other endpoint under services.${target}.endpoints to open it`,
        );
      }
    }
  }
  return notes;
}
