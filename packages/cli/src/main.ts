#!/usr/bin/env node
// The `svcmesh` operator command. Exit codes: 0 ok, 1 failed, 2 bad command line.
import { CommanderError } from "commander";
import { ExitCode, describeFailure } from "./errors.js";
import { buildProgram } from "./program.js";
import { handleStdoutErrors } from "./stdout.js";

handleStdoutErrors();
const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Commander has printed help or its one-line error already.
    process.exitCode = e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  } else {
    const { lines, exitCode } = describeFailure(e, program.opts<{ json?: boolean }>().json === true);
    process.stderr.write(lines.join("\n") + "\n");
    process.exitCode = exitCode;
  }
}
// Connections are closed by now; should anything still hold the event loop open,
// a one-shot command must not hang on it.
setTimeout(() => process.exit(), 1_000).unref();
