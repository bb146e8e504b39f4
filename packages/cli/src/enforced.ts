// What a service's instances enforce, for `svcmesh info`: the limits its code declares
// (as published in $SRV.INFO), unless the policy in force sets them. As the callee
// decides (svcmesh server/service.ts): per-caller rate limits in the policy replace the
// code's whole (a caller they do not name is not limited), and an endpoint's bulkhead
// in the policy replaces the code's for that endpoint.
import type { NatsConnection } from "nats";
import { getPolicy, isMeshError, policyMaxConcurrent, policyRateLimits, resolvedLimits, settingsFor, type StoredPolicy } from "svcmesh/internal";
import type { EndpointDetail, ServiceDetail, VersionDetail } from "./discovery.js";

/** Longest wait for the policy: JetStream that does not answer (no permission, a hung server) must not hold the command. */
const POLICY_READ_TIMEOUT_MS = 3_000;

export type PolicyRead = { ok: true; policy: StoredPolicy | undefined } | { ok: false; error: string };

/** The policy in force (undefined: none), or why it could not be read. Never throws. */
export async function readPolicy(nc: NatsConnection, timeoutMs = POLICY_READ_TIMEOUT_MS): Promise<PolicyRead> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<PolicyRead>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, error: `no answer from JetStream within ${timeoutMs} ms` }), timeoutMs);
  });
  const read = getPolicy(nc).then(
    (policy): PolicyRead => ({ ok: true, policy }),
    (e: unknown): PolicyRead => ({ ok: false, error: isMeshError(e) ? `${e.code}: ${e.message}` : String((e as Error)?.message ?? e) }),
  );
  try {
    return await Promise.race([read, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Where an enforced limit comes from. */
export type LimitSource = "code" | "policy";

export interface EnforcedEndpoint extends EndpointDetail {
  /** The bulkhead instances enforce, when there is one. */
  enforcedMaxConcurrent?: number;
  maxConcurrentFrom: LimitSource;
}

export interface EnforcedVersion extends VersionDetail {
  /** The per-caller limits instances enforce (burst filled in), or null for none. */
  enforcedRateLimits: Record<string, { rps: number; burst: number }> | null;
  rateLimitsFrom: LimitSource;
  endpoints: EnforcedEndpoint[];
}

export interface EnforcedDetail extends ServiceDetail {
  /** The revision of the policy in force; null when none is, or it could not be read. */
  policyRevision: number | null;
  /** Why the policy could not be read (the enforced limits shown are then the code's). */
  policyError?: string;
  versions: EnforcedVersion[];
}

export function withEnforcedLimits(detail: ServiceDetail, read: PolicyRead): EnforcedDetail {
  const stored = read.ok ? read.policy : undefined;
  const fromPolicy = stored ? settingsFor(stored.policy, detail.service) : undefined;
  const fromPolicyLimits = policyRateLimits(fromPolicy);
  const policyLimits = fromPolicyLimits ? resolvedLimits(fromPolicyLimits) : undefined;
  const versions = detail.versions.map((v): EnforcedVersion => ({
    ...v,
    enforcedRateLimits: policyLimits ?? (v.rateLimits as EnforcedVersion["enforcedRateLimits"]),
    rateLimitsFrom: policyLimits ? "policy" : "code",
    endpoints: v.endpoints.map((e): EnforcedEndpoint => {
      const policyMax = policyMaxConcurrent(fromPolicy, e.name);
      const enforced = policyMax ?? e.maxConcurrent;
      return { ...e, ...(enforced !== undefined ? { enforcedMaxConcurrent: enforced } : {}), maxConcurrentFrom: policyMax !== undefined ? "policy" : "code" };
    }),
  }));
  return {
    service: detail.service,
    policyRevision: stored?.revision ?? null,
    ...(read.ok ? {} : { policyError: read.error }),
    versions,
  };
}
