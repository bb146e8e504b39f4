// svcmesh apply <file>: validate a policy document locally, then store it in the
// svcmesh_policies KV bucket, where every instance and caller picks it up live. An
// invalid document is refused whole (file:line:col errors, exit 1) and never sent.
import { userInfo } from "node:os";
import { type Command, InvalidArgumentError } from "commander";
import { ensureAuditStream } from "svcmesh";
import { applyPolicy, diffPolicies, getPolicy, POLICY_APPLIED_SUBJECT, POLICY_BUCKET } from "svcmesh/internal";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { globalOptions } from "../options.js";
import { printJson, printLine } from "../output.js";
import { readPolicyFile } from "./policy.js";

interface ApplyOptions {
  by?: string;
  ifRevision?: number;
}

function defaultBy(): string {
  try {
    return userInfo().username || DEFAULT_CLIENT_NAME;
  } catch {
    return DEFAULT_CLIENT_NAME;
  }
}

function revisionNumber(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("expected a revision number (0: only if none was ever applied).");
  return n;
}

export function registerApply(program: Command): void {
  program
    .command("apply")
    .description("validate a policy document and apply it mesh-wide (live, no restarts)")
    .argument("<file>", "the policy document (YAML); - for stdin")
    .option("--by <name>", "who applies it, for the policy_applied event (default: the OS user)")
    .option("--if-revision <n>", "apply only if the revision in force is still <n> (0: only if none was applied)", revisionNumber)
    .addHelpText("after", `
The document is checked here first: an invalid one is refused whole with
file:line:col errors on stderr (exit 1) and nothing is sent; the policy in force
stays. A valid one is stored in the NATS KV bucket ${POLICY_BUCKET} (created when
missing) and a policy_applied event goes out on ${POLICY_APPLIED_SUBJECT}. The mesh's
JetStream streams (SVC_EVENTS, SVC_AUDIT) are created first when missing: under a
broker config from nats-config, services may store into them but not create them.
Prints the new revision. With --json: {revision, sha, previous, changes, warnings}.

Examples:
  $ svcmesh apply policies.yaml
  applied revision 8 (was 7; 1 change)
  $ svcmesh policy diff policies.yaml     # what it would change, first`)
    .action(async (file: string, opts: ApplyOptions, command: Command) => {
      const globals = globalOptions(command);
      const doc = readPolicyFile(file, globals.json);
      const result = await withMesh(globals, DEFAULT_CLIENT_NAME, async (mesh) => {
        // The operator makes the mesh's streams: a generated broker config lets services
        // store into them but not create them (nats-config.ts). Existing ones are left as they are.
        await Promise.all([mesh.events.ensureStream(), ensureAuditStream(mesh.nc)]);
        const previous = await getPolicy(mesh.nc);
        const applied = await applyPolicy(mesh.nc, doc.text, {
          by: opts.by ?? defaultBy(),
          ...(opts.ifRevision === undefined ? {} : { ifRevision: opts.ifRevision }),
        });
        return { applied, previous, changes: diffPolicies(previous?.policy, applied.policy).length };
      });
      const { applied, previous, changes } = result;
      if (globals.json) {
        return printJson({ revision: applied.revision, sha: applied.sha, previous: previous?.revision ?? null, changes, warnings: applied.warnings }, false);
      }
      const was = previous ? `was ${previous.revision}` : "none before";
      printLine(`applied revision ${applied.revision} (${was}; ${changes === 0 ? "no changes" : `${changes} change${changes === 1 ? "" : "s"}`})`);
    });
}
