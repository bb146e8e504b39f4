// svcmesh call: one request through the library's call pipeline, reply printed as JSON.
import type { Command } from "commander";
import { isMeshError, parseTarget } from "svcmesh";
import { callerName } from "../args.js";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { usageError } from "../errors.js";
import { readPayload } from "../input.js";
import { globalOptions, positiveInteger } from "../options.js";
import { printJson } from "../output.js";

interface CallCommandOptions {
  timeout?: number;
  as: string;
}

export function registerCall(program: Command): void {
  program
    .command("call")
    .description("call an endpoint and print its reply as JSON")
    .argument("<target>", "service and optional version range: payments, payments@2, payments@^2.1, payments@2.1.0")
    .argument("<endpoint>", "endpoint name, e.g. reimburse")
    .argument("[json]", "request payload as JSON, or - to read it from standard input")
    .option("--timeout <ms>", "budget for the call in ms (default: the library's, 2000)", positiveInteger)
    .option("--as <name>", "caller name the service sees", callerName, DEFAULT_CLIENT_NAME)
    .addHelpText("after", `
Exit status: 0 with the reply on stdout; 1 when the call fails, with "CODE: message"
on stderr (e.g. NOT_FOUND, BAD_REQUEST, NO_RESPONDERS, TIMEOUT) and the error's
details as JSON on the next line; 2 for a bad command line or payload.

Examples:
  $ svcmesh call payments@^2 reimburse '{"claimId":"C1","usd":40}'
  $ echo '{"claimId":"C1","usd":40}' | svcmesh call payments reimburse -`)
    .action(async (target: string, endpoint: string, json: string | undefined, opts: CallCommandOptions, command: Command) => {
      const globals = globalOptions(command);
      checkTarget(target);
      const payload = await readPayload(json);
      const reply = await withMesh(globals, opts.as, (mesh) =>
        mesh.call(target, endpoint, payload, opts.timeout === undefined ? undefined : { timeoutMs: opts.timeout }));
      printJson(reply, !globals.json);
    });
}

/** A malformed target is a mistake on the command line, found before connecting. */
function checkTarget(target: string): void {
  try {
    parseTarget(target);
  } catch (e) {
    if (isMeshError(e)) throw usageError(e.message);
    throw e;
  }
}
