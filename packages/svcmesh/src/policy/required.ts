// policy.required (SVCMESH_POLICY_REQUIRED): fail closed. Without a policy in force
// such a process does not run as an open mesh: connect() fails, and should the policy
// go away later, calls it serves and makes are refused UNAVAILABLE (policy-state.ts)
// until one is applied again, as a proxy that has no configuration serves nothing.
import type { Logger } from "pino";
import { MeshError } from "../errors.js";
import type { Disposer } from "../pipeline.js";
import type { PolicyState } from "../policy-state.js";

const REQUIRED_ENV = "SVCMESH_POLICY_REQUIRED";
/** How long connect() waits for the policy by default. */
export const DEFAULT_POLICY_WAIT_MS = 2_000;
/**
 * With required it waits longer: a policy that arrives ends the wait at once, so this
 * only delays a failure, and lets a mesh started together with its NATS server (whose
 * JetStream needs a moment) or with the `svcmesh apply` that writes its first policy come up.
 */
export const REQUIRED_POLICY_WAIT_MS = 10_000;

/** Whether the policy is required: the option, else SVCMESH_POLICY_REQUIRED. Bad values: BAD_REQUEST. */
export function policyRequiredOf(policy: { watch?: boolean; required?: boolean } | undefined): boolean {
  let required = policy?.required;
  const fromEnv = required === undefined;
  if (required === undefined) {
    const raw = process.env[REQUIRED_ENV];
    const value = raw?.trim().toLowerCase() ?? "";
    if (value === "" || value === "0" || value === "false") required = false;
    else if (value === "1" || value === "true") required = true;
    else throw new MeshError("BAD_REQUEST", `connect(): ${REQUIRED_ENV} must be 1 or true (policy required), 0 or false (not), got ${JSON.stringify(raw)}`);
  }
  if (required && policy?.watch === false) {
    // Not watching, it could never have a policy: it would fail every time.
    throw new MeshError("BAD_REQUEST", `connect(): policy.required${fromEnv ? ` (from ${REQUIRED_ENV})` : ""} needs the policy watched, but policy.watch is false (set policy.required: false for a process that follows no policy)`);
  }
  return required;
}

/** Logs one error when the policy goes away under required, and one info when one is back. */
export function logRequiredPolicy(state: PolicyState, logger: Logger, why: () => string | undefined): Disposer {
  let had = false;
  let lost = false;
  return state.onChange((p) => {
    if (!p && had && !lost) {
      lost = true;
      const reason = why() ?? "removed";
      logger.error({ reason }, `policy.required is set and no policy is in force any more: ${reason}. Calls this process serves and makes are refused UNAVAILABLE until a policy is applied again`);
    } else if (p && lost) {
      lost = false;
      logger.info({ revision: p.revision }, `a policy is in force again (revision ${p.revision}): calls are served and made again`);
    }
    had ||= p !== undefined;
  });
}
