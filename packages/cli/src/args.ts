// Commander parsers for arguments several of the new commands share: one service,
// caller or endpoint name (never a subject wildcard), and counts.
import { InvalidArgumentError } from "commander";
import { validEndpointName } from "svcmesh/internal";

/** Letters, digits, - and _: a name that is one subject token (no dots or wildcards). */
function subjectToken(value: string, kind: string): string {
  const name = value.trim();
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new InvalidArgumentError(`"${value}" is not a ${kind} name.`);
  return name;
}

/** One service name as it appears in subjects. */
export function serviceName(value: string): string {
  return subjectToken(value, "service");
}

/** The caller's identity (`call --as`): it goes into headers, tokens and policy rules, so it is checked like a service name. */
export function callerName(value: string): string {
  return subjectToken(value, "caller");
}

export function endpointName(value: string): string {
  const name = value.trim();
  if (!validEndpointName(name)) throw new InvalidArgumentError(`"${value}" is not an endpoint name.`);
  return name;
}

/** Commander parser for `--count <n>` / `--limit <n>`. */
export function positiveCount(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive whole number.");
  return n;
}
