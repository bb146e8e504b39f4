// Whether the policy in force registers this process's identity as its seed has it.
// Callees verify tokens against the policy's keys only, so a seed whose public key the
// policy does not register (another key, or the name missing) means every call this
// process makes is refused UNAUTHENTICATED: better said once at connect and per policy
// revision than learnt from each refused call.

export interface RegistrationProblem {
  /** "error": it has a seed the policy does not register; "warn": it has no seed. */
  level: "error" | "warn";
  message: string;
}

/**
 * What is wrong, or undefined when the policy registers no identities (callers are not
 * authenticated) or registers `publicKey` (the seed's, derived once by its signer) for `name`.
 */
export function registrationProblem(keys: ReadonlyMap<string, string>, revision: number, name: string, publicKey: string | undefined): RegistrationProblem | undefined {
  if (keys.size === 0) return undefined;
  const refused = "services refuse its calls as UNAUTHENTICATED";
  if (publicKey === undefined) {
    return {
      level: "warn",
      message: `the policy in force (revision ${revision}) registers identities but this process has no seed: services that check identities refuse its calls as UNAUTHENTICATED (connect with the seed of ${JSON.stringify(name)}: connect({ seed }) or SVCMESH_SEED)`,
    };
  }
  const registered = keys.get(name);
  if (registered === publicKey) return undefined;
  const register = `svcmesh identity add ${name} ${publicKey}`;
  if (registered === undefined) {
    return {
      level: "error",
      message: `the policy in force (revision ${revision}) registers no identity ${JSON.stringify(name)}, so ${refused}: register this process's key with \`${register}\` (with its roles and clearances)`,
    };
  }
  return {
    level: "error",
    message: `the policy in force (revision ${revision}) registers key ${registered} for ${JSON.stringify(name)}, not this process's seed's key ${publicKey}, so ${refused}: connect with the seed of the registered key, or register this one with \`${register}\` (with its roles and clearances)`,
  };
}
