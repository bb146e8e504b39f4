// svcmesh nats-config <policies.yaml>: the nats-server authorization block that makes
// the broker itself enforce the policy (one nkey user per service), and how each
// service must connect. Local only: no NATS connection.
//
// Seeds: the policy holds public keys only, so the command never sees a service's
// seed and never prints one, except the seeds it generates itself (--generate-keys,
// for services the policy names without an identity): written to <name>.env (mode
// 0600) with --out-dir, else printed on stderr, never into the config text.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Command, Option } from "commander";
import {
  type BrokerPlan,
  brokerPlanFromPolicy,
  brokerPlanNotes,
  BrokerPlanError,
  formatPolicyErrors,
  inboxPrefixFor,
  isUserPublicKey,
  natsAuthorizationConfig,
  newIdentity,
  parsePolicy,
  POLICY_BUCKET,
  serviceConnectSettings,
  servicesWithoutKeys,
} from "svcmesh";
import { CliError, usageError } from "../errors.js";
import { globalOptions } from "../options.js";
import { printJson, printLine } from "../output.js";

interface NatsConfigOptions {
  outDir?: string;
  operator: string[];
  discovery?: "callees" | "all";
  /** false: --no-policy-bucket. */
  policyBucket?: string | false;
  generateKeys?: boolean;
  unnamedEndpoints: "closed" | "open";
}

interface ServiceOut {
  name: string;
  key: string;
  inboxPrefix: string;
  /** The key pair was made by this run (its seed is in `seed` or in the .env file). */
  generated: boolean;
  seed?: string;
  envFile?: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * `--operator name=UKEY` values → name → key. Checked here rather than in commander's
 * argument parser, whose error repeats the argument: a seed given by mistake must not
 * be echoed.
 */
function parseOperators(values: string[]): Record<string, { key: string }> {
  const out: Record<string, { key: string }> = {};
  for (const value of values) {
    const m = /^([A-Za-z0-9_-]{1,64})=(\S+)$/.exec(value);
    if (!m) throw usageError("--operator: expected name=UKEY (an operator name, \"=\", an nkey public user key)");
    const [, name, key] = m as unknown as [string, string, string];
    if (key.startsWith("S")) throw usageError(`--operator ${name}: that is an nkey seed (a secret): give the public key (U...) only`);
    if (!isUserPublicKey(key)) throw usageError(`--operator ${name}: not an nkey public user key (U..., as \`svcmesh identity new\` prints)`);
    if (Object.hasOwn(out, name)) throw usageError(`--operator ${name}: given twice`);
    out[name] = { key };
  }
  return out;
}

export function registerNatsConfig(program: Command): void {
  program
    .command("nats-config")
    .description("generate the nats-server authorization block that enforces a policy document, and each service's connect settings")
    .argument("<policies.yaml>", "the policy document")
    .option("--out-dir <dir>", "write authorization.conf and one <service>.env per service there, instead of printing")
    .option("--operator <name=UKEY>", "an unrestricted user (the svcmesh CLI, dashboards); repeatable", collect, [] as string[])
    .addOption(new Option("--discovery <which>", "which services a service may discover: the ones it may call, or all").choices(["callees", "all"]).default("callees"))
    .option("--policy-bucket <bucket>", "the KV bucket services may watch and read (default: svcmesh_policies, the only one svcmesh services read the policy from)")
    .option("--no-policy-bucket", "grant no policy bucket (only for services connected with policy: { watch: false }: the others could not know the policy and would run open)")
    .option("--generate-keys", "make key pairs for services the policy names without an identity (their seeds are printed or written once)")
    .addOption(
      new Option("--unnamed-endpoints <mode>", "a caller allowed a whole service except some named endpoints: closed = grant only the named open endpoints; open = the whole service")
        .choices(["closed", "open"])
        .default("closed"),
    )
    .addHelpText("after", `
No NATS connection is made. Include the block in the server config
(include ./authorization.conf). Every service then connects with its own seed and the
private inbox prefix _INBOX_<name>:
  connect({ servers, name: "claims", seed })    // or SVCMESH_SEED=SU... in its environment
The seeds stay with the services: this command prints only seeds it generated.
With --json: {authorization, services: [{name, key, inboxPrefix, generated, seed?, envFile?}], notes, files}.

Examples:
  $ svcmesh nats-config policies.yaml > authorization.conf
  $ svcmesh nats-config policies.yaml --out-dir deploy/nats --operator ops=UA...`)
    .action((file: string, opts: NatsConfigOptions, command: Command) => {
      const json = globalOptions(command).json;
      const operators = parseOperators(opts.operator);
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch (e) {
        throw new CliError(`cannot read ${file}: ${(e as Error).message}`, "BAD_REQUEST");
      }
      const parsed = parsePolicy(text);
      if (!parsed.ok) {
        process.stderr.write(formatPolicyErrors(parsed.errors, file) + "\n");
        throw new CliError(`${file}: invalid policy (${parsed.errors.length} error${parsed.errors.length === 1 ? "" : "s"}); nothing generated`, "BAD_REQUEST");
      }
      if (!json) for (const w of parsed.warnings) process.stderr.write(`${file}:${w.line}:${w.column}: warning: ${w.path ? `${w.path}: ` : ""}${w.message}\n`);
      const policy = parsed.policy;

      const generated = new Map<string, { seed: string; publicKey: string }>();
      if (opts.generateKeys) for (const name of servicesWithoutKeys(policy)) generated.set(name, newIdentity());
      let plan: BrokerPlan;
      try {
        plan = brokerPlanFromPolicy(policy, {
          operators,
          discovery: opts.discovery ?? "callees",
          unnamedEndpoints: opts.unnamedEndpoints,
          keys: Object.fromEntries([...generated].map(([n, id]) => [n, id.publicKey])),
          ...(opts.policyBucket !== undefined ? { policyBucket: opts.policyBucket === false ? null : opts.policyBucket } : {}),
        });
      } catch (e) {
        if (e instanceof BrokerPlanError) {
          for (const issue of e.issues) process.stderr.write(`${file}: ${issue}\n`);
          throw new CliError(`${file}: cannot generate the broker config (${e.issues.length} problem${e.issues.length === 1 ? "" : "s"})`, "BAD_REQUEST");
        }
        throw e;
      }
      const notes = brokerPlanNotes(policy, { unnamedEndpoints: opts.unnamedEndpoints });
      // The library watches its own bucket only: a config granting another leaves svcmesh
      // services without the policy.
      if (typeof opts.policyBucket === "string" && opts.policyBucket !== POLICY_BUCKET) {
        notes.push(`--policy-bucket ${opts.policyBucket}: svcmesh services read the policy from ${POLICY_BUCKET} only, which this config no longer grants them: they would run as an open mesh (or, with policy.required, not start). Use another bucket only for clients that read it themselves.`);
      }
      const settings = serviceConnectSettings(plan);
      const services: ServiceOut[] = Object.keys(settings)
        .sort()
        .map((name) => ({ ...settings[name]!, generated: generated.has(name) }));
      const authorization = natsAuthorizationConfig(plan) + connectComments(services, notes);

      const files: string[] = [];
      if (opts.outDir !== undefined) {
        mkdirSync(opts.outDir, { recursive: true });
        const conf = join(opts.outDir, "authorization.conf");
        writeFileSync(conf, authorization);
        files.push(conf);
        for (const s of services) {
          const path = join(opts.outDir, `${s.name}.env`);
          // 0600 for every env file (some hold a seed); chmod too: mode applies only to new files.
          writeFileSync(path, envFile(s, generated.get(s.name)?.seed), { mode: 0o600 });
          chmodSync(path, 0o600);
          s.envFile = path;
          files.push(path);
        }
      } else {
        for (const s of services) if (generated.has(s.name)) s.seed = generated.get(s.name)!.seed;
      }

      if (json) {
        printJson({ authorization, services, notes, files }, false);
        return;
      }
      if (opts.outDir === undefined) {
        process.stdout.write(authorization);
        if (generated.size > 0) process.stderr.write(generatedKeysText(services) + "\n");
      } else {
        printLine([`wrote ${files.join(", ")}`, "", connectTable(services), ...(generated.size > 0 ? ["", identitiesYaml(services)] : [])].join("\n"));
      }
      for (const n of notes) process.stderr.write(`note: ${n}\n`);
    });
}

/** After the block, as config comments (the output stays a valid server config). */
function connectComments(services: ServiceOut[], notes: string[]): string {
  const lines = ["", "# How each service connects (its seed is its own secret, never in this file):"];
  for (const s of services) {
    lines.push(`#   ${s.name}: connect({ servers, name: "${s.name}", seed })  with SVCMESH_SEED=<seed of ${s.key}>; inbox prefix ${s.inboxPrefix}`);
  }
  if (notes.length > 0) lines.push("#", "# Notes:", ...notes.map((n) => `#   ${n}`));
  return lines.join("\n") + "\n";
}

function connectTable(services: ServiceOut[]): string {
  return [
    "How each service connects: connect({ servers, name, seed }) with its seed, e.g. SVCMESH_SEED in its environment (or its .env file):",
    ...services.map((s) => `  ${s.name}: inbox prefix ${s.inboxPrefix}, key ${s.key}${s.generated ? " (generated: seed in its .env file)" : ""}`),
  ].join("\n");
}

function envFile(s: ServiceOut, seed: string | undefined): string {
  return [
    `# svcmesh service ${s.name}: connect({ servers, name: process.env.SVCMESH_NAME, seed: process.env.SVCMESH_SEED })`,
    `# (with a seed, connect() uses the inbox prefix ${inboxPrefixFor(s.name)} by itself; raw nats.js needs inboxPrefix: NATS_INBOX_PREFIX)`,
    `SVCMESH_NAME=${s.name}`,
    `NATS_INBOX_PREFIX=${s.inboxPrefix}`,
    `SVCMESH_PUBLIC_KEY=${s.key}`,
    seed !== undefined ? `SVCMESH_SEED=${seed}` : `# SVCMESH_SEED=<the seed of ${s.key}, from whoever holds it>`,
    "",
  ].join("\n");
}

function generatedKeysText(services: ServiceOut[]): string {
  const lines = ["Generated key pairs (SECRET seeds: give each only to its service, as SVCMESH_SEED; they are not stored anywhere):"];
  for (const s of services) if (s.generated) lines.push(`  ${s.name}: SVCMESH_SEED=${s.seed}`);
  lines.push("", identitiesYaml(services));
  return lines.join("\n");
}

function identitiesYaml(services: ServiceOut[]): string {
  return [
    "Add the generated public keys to the policy's identities (so callees verify their tokens), then apply it:",
    "identities:",
    ...services.filter((s) => s.generated).map((s) => `  ${s.name}: { key: ${s.key} }`),
  ].join("\n");
}
