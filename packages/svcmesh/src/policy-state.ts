// The policy in force in this process, shared by its caller pipeline and its served
// instances. No policy means an open mesh (development), unless policy.required is set:
// then no policy means nothing is served or called (UNAVAILABLE). Once one is set, its
// rules hold: callees authenticate callers when the policy registers identities, and both
// sides authorize with its allow lists, roles and data classes. Compiled once per
// change, so each call costs a few lookups.
import { MeshError } from "./errors.js";
import { type TokenVerifier, createVerifier } from "./identity/index.js";
import { type Authorizer, compileAuthorizer } from "./policy/authorize.js";
import type { PolicyDocument } from "./policy/schema.js";
import type { Disposer } from "./pipeline.js";
import { Header } from "./subjects.js";
import type { RequestMeta } from "./wire.js";

export interface PolicyInForce {
  readonly document: PolicyDocument;
  readonly revision: number;
  readonly authorizer: Authorizer;
  /** Registered identities (name → public key); empty: callers are not authenticated. */
  readonly keys: ReadonlyMap<string, string>;
  /** `Mesh-Policy: <revision>\r\n`, sent with every call. */
  readonly headerLine: string;
}

export class PolicyState {
  private current: PolicyInForce | undefined;
  private readonly listeners = new Set<(p: PolicyInForce | undefined) => void>();

  /** required: no policy in force refuses calls (fail closed) instead of opening the mesh. */
  constructor(readonly required = false) {}

  get inForce(): PolicyInForce | undefined {
    return this.current;
  }

  /** Puts a policy in force (or, with undefined, opens the mesh again). */
  set(document: PolicyDocument | undefined, revision = (this.current?.revision ?? 0) + 1): void {
    this.current = document && {
      document,
      revision,
      authorizer: compileAuthorizer(document),
      keys: new Map(Object.entries(document.identities ?? {}).map(([name, id]) => [name, id.key])),
      headerLine: `${Header.policy}: ${revision}\r\n`,
    };
    for (const l of this.listeners) l(this.current);
  }

  onChange(listener: (p: PolicyInForce | undefined) => void): Disposer {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** Why a call is refused while no policy is in force under policy.required. */
export function noPolicyRefusal(what: string): MeshError {
  return new MeshError("UNAVAILABLE", `${what}: no policy in force and policy.required is set; refused until a policy is applied (svcmesh apply)`);
}

/**
 * Longest caller name and request id a callee accepts. Both key state the instance
 * keeps (a rate-limit bucket per caller, the audit trail's dedup by request id), so
 * without a bound each distinct megabyte-long header value would be kept.
 */
export const MAX_CALLER_CHARS = 256;
export const MAX_REQUEST_ID_CHARS = 128;

function checkMetaSizes(meta: RequestMeta): void {
  if (meta.caller.length > MAX_CALLER_CHARS) {
    throw new MeshError("BAD_REQUEST", `${Header.caller} is ${meta.caller.length} characters long; at most ${MAX_CALLER_CHARS} are accepted`);
  }
  if (meta.requestId.length > MAX_REQUEST_ID_CHARS) {
    throw new MeshError("BAD_REQUEST", `${Header.requestId} is ${meta.requestId.length} characters long; at most ${MAX_REQUEST_ID_CHARS} are accepted`);
  }
}

/**
 * The callee's gate, one per served service: who is calling (verified against the
 * registered keys, never a key the caller sent) and may they call this endpoint.
 */
export class RequestGuard {
  private verifier: TokenVerifier | undefined;

  constructor(
    private readonly service: string,
    private readonly state: PolicyState,
  ) {
    state.onChange((p) => this.verifier?.updateKeys(p?.keys ?? new Map()));
  }

  /**
   * The name to report a refused, unauthenticated request under: the claimed one when the
   * policy registers it (a misconfigured service), else "" (names a prober makes up would
   * each open an event window of their own).
   */
  claimedName(claimed: string): string {
    return this.state.inForce?.keys.has(claimed) ? claimed : "";
  }

  /**
   * The caller to act for, or throws BAD_REQUEST / UNAUTHENTICATED / FORBIDDEN (and
   * UNAVAILABLE with no policy under policy.required). Open mesh: the header's name.
   */
  admit(meta: RequestMeta, endpoint: string, now: number): string {
    checkMetaSizes(meta);
    const p = this.state.inForce;
    if (!p) {
      if (this.state.required) throw noPolicyRefusal(`${this.service}.${endpoint}`);
      return meta.caller;
    }
    let caller = meta.caller;
    if (p.keys.size > 0) {
      this.verifier ??= createVerifier({ keys: p.keys, service: this.service });
      caller = this.verifier.verify(meta.token || undefined, now).caller;
      if (meta.caller && meta.caller !== caller) {
        throw new MeshError("UNAUTHENTICATED", `Mesh-Caller says ${JSON.stringify(meta.caller)} but the token is ${JSON.stringify(caller)}'s`);
      }
    }
    const decision = p.authorizer.check(caller, this.service, endpoint);
    if (!decision.allowed) throw new MeshError("FORBIDDEN", decision.reason, { details: { caller, service: this.service, endpoint, policyRevision: p.revision } });
    return caller;
  }
}
