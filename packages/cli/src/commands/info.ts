// svcmesh info: one service's API contract as its running instances publish it in
// $SRV.INFO: versions and instances, each endpoint's input/output JSON Schemas,
// description, idempotency and bulkhead, and the service's per-caller rate limits:
// the ones enforced, from the code or, where it sets them, the policy in force.
// What a caller needs to know before calling, without reading the service's code.
import type { Command } from "commander";
import { serviceName } from "../args.js";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { DISCOVERY_MAX_WAIT_MS, describeService, queryInfo } from "../discovery.js";
import { type EnforcedDetail, type EnforcedEndpoint, type EnforcedVersion, readPolicy, withEnforcedLimits } from "../enforced.js";
import { CliError } from "../errors.js";
import { globalOptions, positiveInteger } from "../options.js";
import { printable, printJson, printLine } from "../output.js";

interface InfoOptions {
  wait: number;
}

/** Schemas up to this long (compact JSON) stay on one line; longer ones are pretty-printed. */
const COMPACT_SCHEMA_CHARS = 100;

export function registerInfo(program: Command): void {
  program
    .command("info")
    .description("show a service's versions, instances and endpoints with their schemas and limits")
    .argument("<service>", "the service's name", serviceName)
    .option("--wait <ms>", "longest time to wait for instances to answer", positiveInteger, DISCOVERY_MAX_WAIT_MS)
    .addHelpText("after", `
Asks the service's instances with the NATS services protocol ($SRV.INFO.<service>).
Per version: its instances and per-caller rate limits ("*": any caller not named);
per endpoint: its request subject, description, whether it is idempotent (retried
after a timeout), its bulkhead (max concurrent calls per instance), and the JSON
Schemas of its input and output ({} = any value). A service nobody runs is an error
(exit 1).

Limits are the ones enforced, with where they come from: the service's code, or the
policy in force (read from JetStream), which overrides it: per-caller rate limits in
the policy replace the code's whole, a bulkhead in the policy replaces the endpoint's.
(An instance connected with policy: { watch: false } enforces its code's.) If the
policy cannot be read, one line on stderr says so and the code's limits are shown.

With --json: {service, policyRevision (null: none in force or unreadable),
policyError?, versions: [{version, description, instances: [ids], rateLimits (the
code's), enforcedRateLimits, rateLimitsFrom ("code" or "policy"), endpoints: [{name,
subject, description?, idempotent, maxConcurrent? (the code's),
enforcedMaxConcurrent?, maxConcurrentFrom, input, output}]}]}, schemas as JSON objects.

Examples:
  $ svcmesh info payments
  payments
  version 2.1.0  2 instances: 7N9OHC1O3R81U0EWBBPYGM, 7N9OHC1O3R81U0EWBBPYMC
    rate limits: claims 20/s (burst 20)  (from policy revision 7; code: claims 50/s (burst 100), * 10/s (burst 10))
    reimburse  idempotent, max 64 concurrent (from code)  (svc.payments.v2.reimburse)
      description: pay a claim back
      input:
        {
          "type": "object",
          "properties": {
            "claimId": {"type":"string"},
            "usd": {"type":"number","exclusiveMinimum":0}
          },
          "required": ["claimId","usd"]
        }
      output: {"type":"object","properties":{"txn":{"type":"string"}},"required":["txn"]}
  $ svcmesh info payments --json | jq '.versions[0].endpoints[].input'`)
    .action(async (service: string, opts: InfoOptions, command: Command) => {
      const globals = globalOptions(command);
      const { detail, policy } = await withMesh(globals, DEFAULT_CLIENT_NAME, async (mesh) => {
        const [infos, policy] = await Promise.all([queryInfo(mesh.nc, service, opts.wait), readPolicy(mesh.nc)]);
        return { detail: describeService(service, infos), policy };
      });
      if (!detail) throw new CliError(`no running service named ${service}`, "NOT_FOUND");
      const enforced = withEnforcedLimits(detail, policy);
      if (globals.json) return printJson(enforced, false);
      if (enforced.policyError !== undefined) {
        process.stderr.write(printable(`svcmesh: warning: cannot read the policy (${enforced.policyError}): showing the limits in the service's code, which a policy in force would override`) + "\n");
      }
      printLine(formatDetail(enforced));
    });
}

export function formatDetail(detail: EnforcedDetail): string {
  const out: string[] = [detail.service];
  for (const v of detail.versions) out.push(...formatVersion(v, detail.policyRevision));
  return out.map(printable).join("\n");
}

function formatVersion(v: EnforcedVersion, revision: number | null): string[] {
  const n = v.instances.length;
  const out = [`version ${v.version}  ${n} instance${n === 1 ? "" : "s"}: ${v.instances.join(", ")}`];
  if (v.description) out.push(`  description: ${v.description}`);
  const limits = v.enforcedRateLimits ? `${formatLimits(v.enforcedRateLimits)}  ${origin(v.rateLimitsFrom, revision, v.rateLimits ? formatLimits(v.rateLimits) : "none")}` : "none";
  out.push(`  rate limits: ${limits}`);
  if (v.endpoints.length === 0) out.push("  no endpoints");
  for (const e of v.endpoints) out.push(...formatEndpoint(e, revision));
  return out;
}

/** Where an enforced limit comes from; from the policy, with what the code says. */
function origin(from: "code" | "policy", revision: number | null, code: string): string {
  return from === "policy" ? `(from policy revision ${String(revision)}; code: ${code})` : "(from code)";
}

function formatLimits(limits: Record<string, unknown>): string {
  return Object.entries(limits)
    .map(([caller, l]) => {
      const { rps, burst } = (l ?? {}) as { rps?: unknown; burst?: unknown };
      return `${caller} ${String(rps)}/s${burst === undefined ? "" : ` (burst ${String(burst)})`}`;
    })
    .join(", ");
}

function formatEndpoint(e: EnforcedEndpoint, revision: number | null): string[] {
  const bulkhead = e.enforcedMaxConcurrent === undefined
    ? "no bulkhead"
    : `max ${e.enforcedMaxConcurrent} concurrent ${origin(e.maxConcurrentFrom, revision, e.maxConcurrent === undefined ? "no bulkhead" : String(e.maxConcurrent))}`;
  const flags = [e.idempotent ? "idempotent" : "not idempotent", bulkhead];
  const out = [`  ${e.name}  ${flags.join(", ")}  (${e.subject})`];
  if (e.description) out.push(`    description: ${e.description}`);
  out.push(...formatSchema("input: ", e.input), ...formatSchema("output:", e.output));
  return out;
}

/** `{}` says "any"; a short schema stays on its line, a long one is printed below it, nested parts that fit kept on one line. */
function formatSchema(label: string, schema: unknown): string[] {
  if (schema === null) return [`    ${label} (unreadable schema)`];
  const shown = withoutDialect(schema);
  if (typeof shown === "object" && shown !== null && Object.keys(shown).length === 0) return [`    ${label} any (no schema)`];
  const compact = JSON.stringify(shown);
  if (compact.length <= COMPACT_SCHEMA_CHARS) return [`    ${label} ${compact}`];
  return [`    ${label.trimEnd()}`, ...readableJson(shown).split("\n").map((l) => `      ${l}`)];
}

/** Values whose compact JSON fits in this many characters stay on one line. */
const INLINE_CHARS = 60;

/** JSON indented by two, except that any object or array short enough stays on one line. */
export function readableJson(value: unknown, indent = ""): string {
  const compact = JSON.stringify(value) ?? "null";
  if (compact.length <= INLINE_CHARS || typeof value !== "object" || value === null) return compact;
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    return `[\n${value.map((v) => inner + readableJson(v, inner)).join(",\n")}\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${readableJson(v, inner)}`);
  return `{\n${entries.join(",\n")}\n${indent}}`;
}

/** The `$schema` dialect line says nothing to a reader: every schema has the same one. */
function withoutDialect(schema: unknown): unknown {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return schema;
  const { $schema: _dialect, ...rest } = schema as Record<string, unknown>;
  return rest;
}
