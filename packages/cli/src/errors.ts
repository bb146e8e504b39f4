// How the CLI fails: every failure ends as one line on stderr (with --json, one JSON
// line with a code) and an exit code.
import { type ErrorCode, isMeshError } from "svcmesh";
import { printable, toJson } from "./output.js";

export const ExitCode = {
  ok: 0,
  /** The command ran and failed: a mesh error, or no connection to NATS. */
  failure: 1,
  /** The command line was wrong: unknown option, bad argument, payload that is not JSON. */
  usage: 2,
} as const;

/**
 * The `code` of a failure in --json output: a mesh error code where one fits, else
 * USAGE (a bad command line, exit 2) or FAILED (anything else, exit 1).
 */
export type FailureCode = ErrorCode | "USAGE" | "FAILED";

/** A failure the CLI words itself; `message` is printed as is after "svcmesh: ". */
export class CliError extends Error {
  constructor(message: string, readonly code: FailureCode = "FAILED") {
    super(message);
    this.name = "CliError";
  }

  get exitCode(): number {
    return this.code === "USAGE" ? ExitCode.usage : ExitCode.failure;
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, "USAGE");
}

/** Lines to print on stderr for a failure; the first is the one-line reason. */
export function describeFailure(e: unknown, json: boolean): { lines: string[]; exitCode: number } {
  if (e instanceof CliError) {
    return { lines: [json ? toJson({ error: { code: e.code, message: e.message } }, false) : `svcmesh: ${oneLine(e.message)}`], exitCode: e.exitCode };
  }
  if (isMeshError(e)) {
    if (json) return { lines: [toJson({ error: e.toJSON() }, false)], exitCode: ExitCode.failure };
    const lines = [`svcmesh: ${e.code}: ${oneLine(e.message)}`];
    if (e.details !== undefined) lines.push(`details: ${toJson(e.details, false)}`);
    return { lines, exitCode: ExitCode.failure };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { lines: [json ? toJson({ error: { code: "FAILED", message } }, false) : `svcmesh: ${oneLine(message)}`], exitCode: ExitCode.failure };
}

/** Writes a failure to stderr as describeFailure words it; returns its exit code. */
export function reportFailure(e: unknown, json: boolean): number {
  const { lines, exitCode } = describeFailure(e, json);
  process.stderr.write(lines.join("\n") + "\n");
  return exitCode;
}

/** A message as one printable line: it may come from a remote service. */
function oneLine(text: string): string {
  return printable(text.replace(/\s*[\r\n]+\s*/g, " ").trim());
}
