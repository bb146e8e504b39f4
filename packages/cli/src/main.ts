#!/usr/bin/env node
// The `svcmesh` operator command. Exit codes: 0 ok, 1 failed, 2 bad command line.
import { CommanderError } from "commander";
import { ExitCode, reportFailure, usageError } from "./errors.js";
import { jsonRequested } from "./options.js";
import { buildProgram } from "./program.js";
import { handleStdoutErrors } from "./stdout.js";

handleStdoutErrors();
const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Commander has printed help or its one-line error already, except, with --json,
    // the help for a missing command (program.ts holds it back).
    if (e.code === "commander.help" && e.exitCode !== 0 && jsonRequested(process.argv.slice(2))) {
      reportFailure(usageError("expected a command: svcmesh --help lists them"), true);
    }
    process.exitCode = e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  } else {
    process.exitCode = reportFailure(e, program.opts<{ json?: boolean }>().json === true);
  }
}
// Connections are closed by now; should anything still hold the event loop open,
// a one-shot command must not hang on it.
setTimeout(() => process.exit(), 1_000).unref();
