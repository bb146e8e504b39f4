// The caller's policy check, first in the pipeline: a call the policy in force forbids
// fails here with FORBIDDEN, before it uses a token or a network hop. The callee
// checks again regardless (server/endpoint.ts), so skipping this gains nothing. With no
// policy in force the mesh is open, unless policy.required is set: then every call fails
// UNAVAILABLE here (the check costs nothing while a policy is in force).
import { MeshError } from "../errors.js";
import type { Interceptor } from "../pipeline.js";
import { noPolicyRefusal, type PolicyState } from "../policy-state.js";

export function createPolicyInterceptor(state: PolicyState): Interceptor {
  return (ctx, next) => {
    const p = state.inForce;
    if (!p) return state.required ? Promise.reject(noPolicyRefusal(`call to ${ctx.target.service}.${ctx.endpoint}`)) : next(ctx);
    const decision = p.authorizer.check(ctx.caller, ctx.target.service, ctx.endpoint);
    if (decision.allowed) return next(ctx);
    return Promise.reject(
      new MeshError("FORBIDDEN", decision.reason, {
        details: { caller: ctx.caller, service: ctx.target.service, endpoint: ctx.endpoint, policyRevision: p.revision, local: true },
      }),
    );
  };
}
