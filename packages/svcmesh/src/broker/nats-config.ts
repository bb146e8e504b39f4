// Broker-enforced authorization: from a small plan (which service may call which
// endpoints), the nats-server `authorization { users: [...] }` block that makes the
// server itself refuse what the plan forbids, so a service that skips the library
// gains nothing. Pure: no I/O, no NATS connection; the same plan gives the same text.
//
// One nkey user per service. A service may
// - subscribe to its own request subjects (`svc.<name>.>`: the major lane
//   `svc.<name>.v2.<ep>` and the exact lane `svc.<name>.2_1_0.<ep>`), its private
//   inbox `_INBOX_<name>.>`, its own discovery subjects ($SRV.PING|INFO|STATS, plain,
//   `.<name>` and `.<name>.<id>`), and the instance announcements every caller's
//   discovery listens to (`svc.events.instance_started.*`, `...instance_stopped.*`);
// - publish to `svc.<target>.*.<endpoint>` for each endpoint it may call (the `*`
//   covers both lanes), `$SRV.INFO.<target>` (discovery of what it calls), mesh
//   events about itself (`svc.events.*.<name>`) and the caller-side events about its
//   targets (`svc.events.<type>.<target>` for timeout, circuit_*, ...: never another
//   service's instance announcements), trace subjects of itself and its targets, its
//   own audit subject (`svc.audit.<name>`), `$SRV.INFO.<name>` (its rate limiter counts
//   its instances), and the JetStream API calls that store events in SVC_EVENTS and
//   audit records in SVC_AUDIT (stored into, looked at: never created, which the operator does);
// - watch and read the policy bucket (svcmesh_policies unless the plan says otherwise);
// - answer requests it received (`allow_responses: { max: 1, expires: "1m" }`):
//   replies go to the caller's inbox without a publish grant on it.
//
// The library must then be connected as that user, with its private inbox:
//   connect({ name, nats: { inboxPrefix: "_INBOX_<name>", authenticator: nkeyAuthenticator(seed) } })
// (see serviceConnectSettings()). With the default `_INBOX` prefix every request fails:
// the server refuses the subscription to `_INBOX.<nuid>.*`.
import { fromPublic } from "nkeys.js";
import { EVENT_TYPES } from "../events/schemas.js";
import { EVENTS_STREAM } from "../events/stream.js";
import { AUDIT_STREAM } from "../audit/record.js";
import { POLICY_BUCKET } from "../policy/store.js";
import { AUDIT_ROOT, DEFAULT_INBOX_PREFIX, EVENTS_ROOT, SUBJECT_ROOT, TRACE_ROOT, validEndpointName, validServiceName } from "../subjects.js";

/** What the broker should allow; a policy document is mapped onto this. */
export interface BrokerPlan {
  /** Per service name: its nkey public user key (`U...`) and what it may call. */
  services: Record<string, BrokerService>;
  /**
   * Operator tools (the `svcmesh` CLI, dashboards): users with no permissions block,
   * i.e. allowed everything. Keep them few; their seeds are mesh-wide master keys.
   */
  operators?: Record<string, { key: string }>;
  /** The JetStream stream events are stored in (default SVC_EVENTS); null: grant no JetStream API. */
  eventsStream?: string | null;
  /** The JetStream stream audit records are stored in (default SVC_AUDIT); null: grant no JetStream API for it. */
  auditStream?: string | null;
  /**
   * Which services a service may discover ($SRV.INFO.<name>): only those it may call
   * ("callees", the default), or all of them ("all": names, versions and endpoint
   * schemas become visible mesh-wide, and a call to a service it may not call then
   * fails FORBIDDEN at the endpoint instead of finding no instance).
   */
  discovery?: "callees" | "all";
  /**
   * The NATS KV bucket the policy document lives in: every service may watch and read
   * it (never write: only operators apply policies). Default: the library's bucket
   * (svcmesh_policies), without which a service cannot know the policy and runs open;
   * null: no grant (services connected with `policy: { watch: false }`).
   */
  policyBucket?: string | null;
  /** `allow_responses` of every service (default { max: 1, expires: "1m" }). */
  responses?: { max: number; expires: string };
}

export interface BrokerService {
  /** nkey public user key, `U` + 55 base32 characters. */
  key: string;
  /** Target service → endpoints it may call, or ["*"] for every endpoint. */
  calls?: Record<string, string[]>;
  /** Extra grants (e.g. a KV bucket the policy watcher reads); NATS subject patterns. */
  extra?: { publish?: string[]; subscribe?: string[] };
}

/** One user of the generated block, as data (tests and tools inspect it). */
export interface BrokerUser {
  /** The service or operator name (a comment in the config). */
  name: string;
  kind: "service" | "operator";
  nkey: string;
  /** Undefined for operators: no permissions block. */
  permissions?: {
    publish: string[];
    subscribe: string[];
    allowResponses: { max: number; expires: string };
  };
}

/** How a service's process must connect to the broker. */
export interface ServiceConnectSettings {
  name: string;
  /** Its nkey public key (the seed stays with the service). */
  key: string;
  /** Pass as `connect({ nats: { inboxPrefix } })`; the only inbox it may subscribe to. */
  inboxPrefix: string;
}

export class BrokerPlanError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid broker plan: ${issues.join("; ")}`);
    this.name = "BrokerPlanError";
  }
}

export const DEFAULT_RESPONSES = { max: 1, expires: "1m" } as const;

/** The private inbox prefix of a service: `_INBOX_<name>`. */
export function inboxPrefixFor(service: string): string {
  return `${DEFAULT_INBOX_PREFIX}_${service}`;
}

/**
 * Event types a caller publishes about the services it calls (mesh.ts: breaker
 * transitions, timeouts, no responders, its own rate limit, exhausted retries). Not
 * instance announcements, nor callee-side events such as bulkhead_full: those only the
 * service itself publishes. A new caller-side event type must be added here.
 */
const CALLER_EVENT_TYPES = ["circuit_open", "circuit_half_open", "circuit_close", "timeout", "no_responders", "rate_limited", "retry_exhausted"].filter((t) =>
  (EVENT_TYPES as readonly string[]).includes(t),
);
const ANNOUNCEMENTS = ["instance_started", "instance_stopped"];
const SRV_VERBS = ["PING", "INFO", "STATS"];

/** Checks a plan whole; throws BrokerPlanError listing every problem. */
export function checkBrokerPlan(plan: BrokerPlan): void {
  const issues: string[] = [];
  const keys = new Map<string, string>();
  const checkKey = (who: string, key: unknown) => {
    if (typeof key !== "string" || !key.startsWith("U") || !isPublicKey(key)) {
      issues.push(`${who}.key: not an nkey public user key (U...)`);
      return;
    }
    const other = keys.get(key);
    if (other) issues.push(`${who}.key: the same key as ${other}`);
    keys.set(key, who);
  };
  if (typeof plan?.services !== "object" || plan.services === null) {
    throw new BrokerPlanError(["services: required"]);
  }
  for (const [name, svc] of Object.entries(plan.services)) {
    const at = `services.${name}`;
    if (!validServiceName(name)) issues.push(`${at}: invalid service name`);
    checkKey(at, svc?.key);
    for (const [target, endpoints] of Object.entries(svc?.calls ?? {})) {
      if (!validServiceName(target)) issues.push(`${at}.calls.${target}: invalid service name`);
      if (!Array.isArray(endpoints) || endpoints.length === 0) {
        issues.push(`${at}.calls.${target}: a non-empty list of endpoints, or ["*"]`);
        continue;
      }
      for (const ep of endpoints) {
        if (ep !== "*" && !(typeof ep === "string" && validEndpointName(ep))) issues.push(`${at}.calls.${target}: invalid endpoint ${JSON.stringify(ep)}`);
      }
    }
    for (const kind of ["publish", "subscribe"] as const) {
      for (const s of svc?.extra?.[kind] ?? []) {
        if (typeof s !== "string" || !validSubject(s)) issues.push(`${at}.extra.${kind}: invalid subject ${JSON.stringify(s)}`);
      }
    }
  }
  for (const [name, op] of Object.entries(plan.operators ?? {})) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) issues.push(`operators.${name}: invalid name`);
    checkKey(`operators.${name}`, op?.key);
  }
  if (plan.discovery !== undefined && plan.discovery !== "callees" && plan.discovery !== "all") issues.push('discovery: "callees" or "all"');
  if (plan.policyBucket != null && !/^[A-Za-z0-9_-]{1,64}$/.test(plan.policyBucket)) issues.push("policyBucket: invalid bucket name");
  if (plan.eventsStream != null && !/^[A-Za-z0-9_-]{1,64}$/.test(plan.eventsStream)) issues.push("eventsStream: invalid stream name");
  if (plan.responses !== undefined) {
    if (!(Number.isInteger(plan.responses.max) && plan.responses.max >= 1)) issues.push("responses.max: a whole number ≥ 1");
    if (!/^\d+(ms|s|m|h)$/.test(String(plan.responses.expires))) issues.push('responses.expires: a duration such as "1m"');
  }
  if (issues.length > 0) throw new BrokerPlanError(issues);
}

/** The users of the authorization block, services first, each list sorted (stable output). */
export function brokerUsers(plan: BrokerPlan): BrokerUser[] {
  checkBrokerPlan(plan);
  const streams = [plan.eventsStream === undefined ? EVENTS_STREAM : plan.eventsStream, plan.auditStream === undefined ? AUDIT_STREAM : plan.auditStream]
    .filter((s): s is string => s !== null);
  const responses = plan.responses ?? DEFAULT_RESPONSES;
  const users: BrokerUser[] = [];
  for (const name of Object.keys(plan.services).sort()) {
    const svc = plan.services[name]!;
    const publish = new Set<string>();
    const subscribe = new Set<string>();

    // Serving: its own lanes, discovery about itself.
    subscribe.add(`${SUBJECT_ROOT}.${name}.>`);
    for (const verb of SRV_VERBS) {
      subscribe.add(`$SRV.${verb}`);
      subscribe.add(`$SRV.${verb}.${name}`);
      subscribe.add(`$SRV.${verb}.${name}.*`);
    }
    // Replies (its calls, discovery answers, JetStream acks) come to its private inbox.
    subscribe.add(`${inboxPrefixFor(name)}.>`);
    // Every caller's discovery follows instance announcements.
    for (const type of ANNOUNCEMENTS) subscribe.add(`${EVENTS_ROOT}.${type}.*`);

    // About itself: announcements and callee-side events, traces, its own audit records
    // (only the instance that ran a handler writes its record: no caller can forge one).
    publish.add(`${EVENTS_ROOT}.*.${name}`);
    publish.add(`${TRACE_ROOT}.${name}.>`);
    publish.add(`${AUDIT_ROOT}.${name}`);
    // Discovery of itself: its rate limiter shares each limit among the running instances.
    publish.add(`$SRV.INFO.${name}`);

    // Calling: the endpoints granted on both lanes, discovery, caller-side events.
    for (const target of Object.keys(svc.calls ?? {}).sort()) {
      const endpoints = svc.calls![target]!;
      const all = endpoints.includes("*");
      for (const ep of all ? ["*"] : [...new Set(endpoints)].sort()) publish.add(`${SUBJECT_ROOT}.${target}.*.${ep}`);
      publish.add(`$SRV.INFO.${target}`);
      if (target !== name) {
        for (const type of CALLER_EVENT_TYPES) publish.add(`${EVENTS_ROOT}.${type}.${target}`);
        for (const ep of all ? [">"] : [...new Set(endpoints)].sort()) publish.add(`${TRACE_ROOT}.${target}.${ep}`);
      }
    }

    if (plan.discovery === "all") publish.add("$SRV.INFO.*");

    // Storing events and audit records: the look the library takes before the first one.
    // Never STREAM.CREATE: nats-server cannot limit the config a create carries, so a
    // service could make SVC_AUDIT keep nothing, or capture other services' subjects.
    // The operator creates the streams (`svcmesh apply` does when they are missing).
    // (JetStream publish acks arrive on the inbox.)
    for (const stream of streams) {
      publish.add("$JS.API.INFO");
      publish.add(`$JS.API.STREAM.INFO.${stream}`);
    }

    // Watching the policy bucket, read-only: its stream info, ephemeral ordered
    // consumers (delivered to the inbox; flow-control replies are responses), and
    // single-key gets (direct get where the stream allows it, else STREAM.MSG.GET).
    const bucket = plan.policyBucket === undefined ? POLICY_BUCKET : plan.policyBucket;
    if (bucket !== null) {
      const kv = `KV_${bucket}`;
      publish.add("$JS.API.INFO");
      publish.add(`$JS.API.STREAM.INFO.${kv}`);
      publish.add(`$JS.API.CONSUMER.CREATE.${kv}`);
      publish.add(`$JS.API.CONSUMER.CREATE.${kv}.>`);
      publish.add(`$JS.API.STREAM.MSG.GET.${kv}`);
      publish.add(`$JS.API.DIRECT.GET.${kv}.>`);
    }

    for (const s of svc.extra?.publish ?? []) publish.add(s);
    for (const s of svc.extra?.subscribe ?? []) subscribe.add(s);
    users.push({
      name,
      kind: "service",
      nkey: svc.key,
      permissions: { publish: [...publish], subscribe: [...subscribe], allowResponses: { ...responses } },
    });
  }
  for (const name of Object.keys(plan.operators ?? {}).sort()) {
    users.push({ name, kind: "operator", nkey: plan.operators![name]!.key });
  }
  return users;
}

/**
 * The nats-server config text: `authorization { users: [...] }`, one nkey user per
 * service (and operator). Include it in a server config (`include ./mesh-auth.conf`)
 * or append it. Throws BrokerPlanError for an invalid plan.
 */
export function natsAuthorizationConfig(plan: BrokerPlan): string {
  const users = brokerUsers(plan);
  const q = (s: string) => JSON.stringify(s); // NATS config strings: quoted, so `$SRV` is not a variable
  const list = (xs: string[], indent: string) => `[\n${xs.map((x) => `${indent}  ${q(x)}`).join(",\n")}\n${indent}]`;
  const lines = [
    "# Generated by svcmesh (broker/nats-config.ts): one nkey user per service.",
    "# Each service must connect with inboxPrefix \"_INBOX_<name>\" and its nkey seed.",
    "authorization {",
    "  users: [",
  ];
  for (const u of users) {
    lines.push(`    # ${u.kind} ${u.name}${u.kind === "service" ? ` (inbox prefix ${inboxPrefixFor(u.name)})` : ": no restrictions"}`);
    if (!u.permissions) {
      lines.push(`    { nkey: ${q(u.nkey)} }`);
      continue;
    }
    const p = u.permissions;
    lines.push(
      "    {",
      `      nkey: ${q(u.nkey)}`,
      "      permissions: {",
      `        publish: { allow: ${list(p.publish, "        ")} }`,
      `        subscribe: { allow: ${list(p.subscribe, "        ")} }`,
      `        allow_responses: { max: ${p.allowResponses.max}, expires: ${q(p.allowResponses.expires)} }`,
      "      }",
      "    }",
    );
  }
  lines.push("  ]", "}");
  return lines.join("\n") + "\n";
}

/** How each service of the plan must connect (its inbox prefix; the seed is its own). */
export function serviceConnectSettings(plan: BrokerPlan): Record<string, ServiceConnectSettings> {
  checkBrokerPlan(plan);
  const out: Record<string, ServiceConnectSettings> = {};
  for (const [name, svc] of Object.entries(plan.services)) out[name] = { name, key: svc.key, inboxPrefix: inboxPrefixFor(name) };
  return out;
}

function isPublicKey(key: string): boolean {
  try {
    fromPublic(key);
    return true;
  } catch {
    return false;
  }
}

/** A NATS subject or pattern: non-empty tokens, `>` only last, no whitespace. */
function validSubject(s: string): boolean {
  if (s.length === 0 || /\s/.test(s)) return false;
  const tokens = s.split(".");
  return tokens.every((t, i) => t.length > 0 && (t !== ">" || i === tokens.length - 1));
}
