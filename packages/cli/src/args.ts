// Commander parsers for arguments several of the new commands share: one service or
// endpoint name (never a subject wildcard), and counts.
import { InvalidArgumentError } from "commander";
import { validEndpointName } from "svcmesh/internal";

/** One service name as it appears in subjects: letters, digits, - and _ (no dots or wildcards). */
export function serviceName(value: string): string {
  const name = value.trim();
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new InvalidArgumentError(`"${value}" is not a service name.`);
  return name;
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
