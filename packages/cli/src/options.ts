// Options every command understands, and parsers shared by command options.
import { type Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_SERVER } from "svcmesh";

export interface GlobalOptions {
  /** One URL or a comma-separated list, as the `nats` CLI takes them. */
  server: string;
  json: boolean;
}

export function addGlobalOptions(program: Command): Command {
  return program
    .addOption(new Option("-s, --server <url>", "NATS server URL(s), comma-separated").env("NATS_URL").default(DEFAULT_SERVER))
    .option("--json", "machine-readable output");
}

/** The global options as seen from inside a subcommand's action. */
export function globalOptions(command: Command): GlobalOptions {
  const o = command.optsWithGlobals<Partial<GlobalOptions>>();
  return { server: o.server ?? DEFAULT_SERVER, json: o.json === true };
}

/**
 * Whether --json was given, read from the raw arguments: a bad command line is
 * reported before commander has parsed (or even reached) the option.
 */
export function jsonRequested(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

export function servers(server: string): string[] {
  return server.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

/** Commander parser for options such as `--timeout <ms>`. */
export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive whole number of milliseconds.");
  return n;
}
