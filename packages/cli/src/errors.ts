// How the CLI fails: every failure ends as one line on stderr and an exit code.
import { isMeshError } from "svcmesh";

export const ExitCode = {
  ok: 0,
  /** The command ran and failed: a mesh error, or no connection to NATS. */
  failure: 1,
  /** The command line was wrong: unknown option, bad argument, payload that is not JSON. */
  usage: 2,
} as const;

/** A failure the CLI words itself; `message` is printed as is after "svcmesh: ". */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = ExitCode.failure) {
    super(message);
    this.name = "CliError";
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, ExitCode.usage);
}

/** Lines to print on stderr for a failure; the first is the one-line reason. */
export function describeFailure(e: unknown, json: boolean): { lines: string[]; exitCode: number } {
  if (e instanceof CliError) {
    return { lines: [json ? JSON.stringify({ error: { message: e.message } }) : `svcmesh: ${oneLine(e.message)}`], exitCode: e.exitCode };
  }
  if (isMeshError(e)) {
    if (json) return { lines: [JSON.stringify({ error: e.toJSON() })], exitCode: ExitCode.failure };
    const lines = [`svcmesh: ${e.code}: ${oneLine(e.message)}`];
    if (e.details !== undefined) lines.push(`details: ${JSON.stringify(e.details)}`);
    return { lines, exitCode: ExitCode.failure };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { lines: [json ? JSON.stringify({ error: { message } }) : `svcmesh: ${oneLine(message)}`], exitCode: ExitCode.failure };
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}
