// svcmesh doctor: checks a deployment against what the mesh needs (server, JetStream,
// the mesh's streams, no other stream on its subjects, the policy, the running
// services), one line per check, like `istioctl analyze`. Exit 1 when any is an error.
import { type Command, Option } from "commander";
import type { NatsConnection, ServiceInfo } from "nats";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { DISCOVERY_MAX_WAIT_MS, queryInfo } from "../discovery.js";
import { meshStreamChecks, otherStreamChecks, serverChecks } from "../doctor/jetstream.js";
import { policyChecks } from "../doctor/policy.js";
import { error, type Finding, formatFinding, formatSummary, skipped } from "../doctor/report.js";
import { coverageFindings, identityFindings, limitsFindings, meshInstances, servicesFinding } from "../doctor/services.js";
import { CliError } from "../errors.js";
import { globalOptions, positiveInteger } from "../options.js";
import { plural, printJson, printLine } from "../output.js";

interface DoctorOptions {
  wait: number;
  failOn: "error" | "warn";
}

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("check the deployment: server, JetStream, the mesh's streams, the policy, the running services")
    .option("--wait <ms>", "longest time to wait for instances to answer discovery", positiveInteger, DISCOVERY_MAX_WAIT_MS)
    .addOption(new Option("--fail-on <level>", "exit 1 when a check is at this level or worse").choices(["error", "warn"]).default("error"))
    .addHelpText("after", `
One line per check: ok, info, warn or error, what was checked, and for warn and error
what to do (after →); a check that cannot run says "skipped: <why>" (e.g. without
JetStream). Run it with operator credentials, as the other commands. It checks:
  - the server's version and cluster, and that JetStream is enabled (error if not:
    the policy, events and audit records cannot be stored; the mesh runs open);
  - SVC_EVENTS and SVC_AUDIT: there (warn if not: \`svcmesh apply\` creates them),
    on exactly the library's subjects (error if a stream captures more: on request
    subjects it answers callers with a JetStream ack), SVC_AUDIT's duplicate window
    long enough for the audit writers' re-sends (error if not), 1 replica on a
    cluster (warn);
  - no other stream on the mesh's subjects (requests, $SRV.>, svc.trace.>, events,
    audit);
  - the policy in force (revision, sha256), that the bucket's latest value parses,
    and a warning when none is applied (the mesh is open);
  - the running services: instances of one version with the same rate limits and
    bulkheads, services the policy names that nobody runs, running services its
    allow lists leave open, and (when the policy registers identities) an identity
    for each running service's name. Seeds and the names callers connect with are
    not visible from here: only service names are checked.
Exit 1 when any check is an error (with --fail-on warn: a warning or an error;
stderr says which), else 0.
With --json: [{check, status, message, hint}] (status: ok, info, warn, error or
skipped; hint: what to do, or null).

Examples:
  $ svcmesh doctor
  ok     server: nats-server 2.9.10 (n1), cluster mesh of 3 servers
  ok     jetstream: enabled, 4 streams in this account
  ok     stream SVC_EVENTS: captures exactly svc.events.>
  warn   SVC_EVENTS replicas: 1 replica on a cluster of 3: its messages are lost when the server holding them is lost → nats stream edit SVC_EVENTS --replicas 3
  error  stream ORDERS: captures svc.payments.>: it captures request subjects ... → take the mesh's subjects out of ORDERS ...
  ...
  14 checks: 11 ok, 1 warning, 1 error, 1 skipped
  $ svcmesh doctor --json | jq '.[] | select(.status == "error")'`)
    .action(async (opts: DoctorOptions, command: Command) => {
      const globals = globalOptions(command);
      const findings = await withMesh(globals, DEFAULT_CLIENT_NAME, (mesh) => runChecks(mesh.nc, opts.wait));
      if (globals.json) printJson(findings, false);
      else {
        for (const f of findings) printLine(formatFinding(f));
        printLine(formatSummary(findings));
      }
      const failed = findings.filter((f) => f.status === "error" || (opts.failOn === "warn" && f.status === "warn"));
      if (failed.length > 0) {
        throw new CliError(`doctor: ${plural(failed.length, "check")} failed: ${failed.map((f) => `${f.check} (${f.status})`).join(", ")}`);
      }
    });
}

async function runChecks(nc: NatsConnection, waitMs: number): Promise<Finding[]> {
  const findings: Finding[] = [];
  const server = await serverChecks(nc);
  findings.push(...server.findings, ...meshStreamChecks(nc, server.js), ...otherStreamChecks(server.js));
  const policy = await policyChecks(nc, server.js);
  findings.push(...policy.findings);
  let infos: ServiceInfo[];
  try {
    infos = meshInstances(await queryInfo(nc, undefined, waitMs));
  } catch (e) {
    const why = "the running services cannot be discovered";
    findings.push(error("services", `${why}: ${(e as Error)?.message ?? String(e)}`, "run doctor with operator credentials (it asks $SRV.INFO as `svcmesh ls` does)"));
    findings.push(skipped("limits", why), skipped("policy services", why), skipped("identities", why));
    return findings;
  }
  const doc = "stored" in policy.policy ? policy.policy.stored?.policy : undefined;
  findings.push(servicesFinding(infos, waitMs), ...limitsFindings(infos, doc), ...coverageFindings(infos, policy.policy), ...identityFindings(infos, policy.policy));
  return findings;
}
