// The command tree: global options, error/exit behaviour, and every command.
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { commands } from "./commands/index.js";
import { reportFailure, usageError } from "./errors.js";
import { addGlobalOptions, jsonRequested } from "./options.js";

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

const json = (): boolean => jsonRequested(process.argv.slice(2));

export function buildProgram(): Command {
  const program = new Command("svcmesh")
    .description("operate a svcmesh service mesh over NATS")
    .version(packageVersion(), "-V, --version")
    // Settings made here before .command() are inherited by every command.
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({
      // Commander's usage errors come as "error: ..." plus, maybe, a suggestion line:
      // reword them to the CLI's one-line form (a JSON line with --json).
      outputError: (text) => void reportFailure(usageError(text.replace(/^error: /, "").replace(/\s*\n\s*/g, " ").trim()), json()),
      // Only help shown for a missing command goes here: with --json, main reports that as a JSON line instead.
      writeErr: (text) => void (json() || process.stderr.write(text)),
    });
  addGlobalOptions(program);
  for (const register of commands) register(program);
  return program;
}
