// svcmesh policy show | diff <file> | schema: the policy in force (from the
// svcmesh_policies KV bucket), what applying a file would change, and the document's
// JSON Schema. `svcmesh apply` (apply.ts) stores a document.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  diffPolicies,
  formatDiff,
  formatPolicyErrors,
  getPolicy,
  MeshError,
  parsePolicy,
  POLICY_BUCKET,
  policyJsonSchema,
  policySha,
  type PolicyDocument,
  type PolicyError,
} from "svcmesh/internal";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { CliError } from "../errors.js";
import { globalOptions } from "../options.js";
import { printJson, printLine } from "../output.js";

/** What the text output says when nothing is applied. */
export const NO_POLICY = "no policy applied (the mesh is open)";

/**
 * Reads and validates a policy file locally, before any connection. Invalid: the
 * errors as `file:line:col: path: message` lines on stderr (with --json: one JSON
 * error line with details.errors) and exit 1. Warnings go to stderr as text.
 */
export function readPolicyFile(file: string, json: boolean): { text: string; policy: PolicyDocument; warnings: PolicyError[] } {
  let text: string;
  try {
    text = file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, "BAD_REQUEST");
  }
  const name = file === "-" ? "<stdin>" : file;
  const parsed = parsePolicy(text);
  if (!parsed.ok) {
    const summary = `${name}: invalid policy document, ${parsed.errors.length} error${parsed.errors.length === 1 ? "" : "s"}; nothing applied`;
    if (json) throw new MeshError("BAD_REQUEST", summary, { details: { errors: parsed.errors } });
    process.stderr.write(formatPolicyErrors(parsed.errors, name) + "\n");
    throw new CliError(summary, "BAD_REQUEST");
  }
  if (parsed.warnings.length > 0 && !json) {
    process.stderr.write(parsed.warnings.map((w) => `${name}:${w.line}:${w.column}: warning: ${w.path ? `${w.path}: ` : ""}${w.message}`).join("\n") + "\n");
  }
  return { text, policy: parsed.policy, warnings: parsed.warnings };
}

export function registerPolicy(program: Command): void {
  const policy = program
    .command("policy")
    .description("the policy in force: show it, diff a file against it, print the document's JSON Schema");

  policy
    .command("show")
    .description("print the policy document in force and its revision")
    .addHelpText("after", `
Prints the YAML as it was applied, after a comment line with its revision, so the
output is itself a valid document. When none was applied: "${NO_POLICY}".
With --json: {revision, sha, text, policy} (all null when none is applied).

Example:
  $ svcmesh policy show
  # svcmesh policy in force: revision 7, sha256 3f1c...
  version: 1
  ...`)
    .action(async (_opts: unknown, command: Command) => {
      const globals = globalOptions(command);
      const current = await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => getPolicy(mesh.nc));
      if (globals.json) {
        return printJson(current
          ? { revision: current.revision, sha: policySha(current.text), text: current.text, policy: current.policy }
          : { revision: null, sha: null, text: null, policy: null }, false);
      }
      if (!current) return printLine(NO_POLICY);
      printLine(`# svcmesh policy in force: revision ${current.revision}, sha256 ${policySha(current.text)}`);
      process.stdout.write(current.text.endsWith("\n") ? current.text : current.text + "\n");
    });

  policy
    .command("diff")
    .description("what applying <file> would change against the policy in force (nothing is applied)")
    .argument("<file>", "the policy document (YAML); - for stdin")
    .addHelpText("after", `
One line per change: + added, - removed, ~ changed (before → after); "no changes" when
none. An invalid file is reported with file:line:col errors (exit 1), as by apply.
With --json: {revision, changes: [{path, kind, before?, after?}]} (revision: the one
in force, null when none).

Example:
  $ svcmesh policy diff policies.yaml
  against revision 7
  ~ services.payments.traffic["2.2.0"]: 10 → 50`)
    .action(async (file: string, _opts: unknown, command: Command) => {
      const globals = globalOptions(command);
      const next = readPolicyFile(file, globals.json);
      const current = await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => getPolicy(mesh.nc));
      const changes = diffPolicies(current?.policy, next.policy);
      if (globals.json) return printJson({ revision: current?.revision ?? null, changes }, false);
      printLine(current ? `against revision ${current.revision}` : `against no policy (the mesh is open)`);
      printLine(formatDiff(changes));
    });

  policy
    .command("schema")
    .description("print the policy document's JSON Schema (for editors and CI)")
    .addHelpText("after", `
No NATS connection is made. Pretty-printed; compact with --json.
Policies live in the NATS KV bucket ${POLICY_BUCKET}.

Example:
  $ svcmesh policy schema > policy.schema.json`)
    .action((_opts: unknown, command: Command) => {
      printJson(policyJsonSchema(), !globalOptions(command).json);
    });
}
