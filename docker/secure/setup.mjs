#!/usr/bin/env node
// One-time setup of the secure demo (docker/docker-compose.secure.yml): fresh key pairs
// for the policy's identities and for the operator, then the broker config. Run from
// the repository root after `pnpm build`:
//
//   node docker/secure/setup.mjs [--out DIR]     # DIR default: docker/secure/deploy
//
// Writes into DIR (gitignored; seeds are secrets, files holding them are mode 0600):
//   policies.yaml        the policy with the new public keys (what `svcmesh apply` applies)
//   authorization.conf   the nats-server users and permissions (`svcmesh nats-config`)
//   <identity>.env       SVCMESH_SEED and connect settings of each identity (env_file)
//   operator.env         SVCMESH_SEED of the operator user that runs `svcmesh apply`
//   cluster.env          NATS_ROUTE_PASSWORD, which the nodes' routes must present
//                        (compose reads it: docker compose --env-file <DIR>/cluster.env ...)
// Running it again makes new keys: restart the whole deployment after it.
// The CLI makes the keys and the config; this script only puts the keys into the policy
// and the seeds into the env files, which `nats-config` leaves to whoever holds them.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const cliMain = join(root, "packages/cli/dist/main.js");
const OPERATOR = "operator";

const args = process.argv.slice(2);
if (!(args.length === 0 || (args.length === 2 && args[0] === "--out" && args[1]))) {
  process.stderr.write("usage: node docker/secure/setup.mjs [--out DIR]\n");
  process.exit(2);
}
const out = resolve(args[1] ?? join(here, "deploy"));

if (!existsSync(cliMain)) {
  process.stderr.write(`setup: ${relative(process.cwd(), cliMain)} is missing: run pnpm build first\n`);
  process.exit(1);
}

/** The CLI's stdout; its stderr (errors, warnings, notes) goes to the operator. */
function cli(cliArgs) {
  try {
    return execFileSync(process.execPath, [cliMain, ...cliArgs], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  } catch (e) {
    process.stderr.write(`setup: svcmesh ${cliArgs[0]} failed (exit ${e.status ?? e.message}); nothing more written\n`);
    process.exit(1);
  }
}

function writeSecret(path, text) {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600); // mode applies only to a new file
}

const template = readFileSync(join(here, "policies.yaml"), "utf8");
/** KEY_<name>: where the policy template wants an identity's public key. */
const KEY_PLACEHOLDER = /\bKEY_([A-Za-z0-9_-]+)/g;
const names = [...new Set([...template.matchAll(KEY_PLACEHOLDER)].map((m) => m[1]))];
if (names.length === 0) {
  process.stderr.write("setup: docker/secure/policies.yaml has no KEY_<name> placeholder: nothing to make keys for\n");
  process.exit(1);
}
const identity = (name) => JSON.parse(cli(["identity", "new", name, "--json"]));
const ids = new Map(names.map((n) => [n, identity(n)]));
const operator = identity(OPERATOR);

mkdirSync(out, { recursive: true });
const policyFile = join(out, "policies.yaml");
writeFileSync(policyFile, template.replace(KEY_PLACEHOLDER, (_, n) => ids.get(n).publicKey));
// --discovery all: the demo client waits until every service answers discovery.
cli(["nats-config", policyFile, "--out-dir", out, "--operator", `${OPERATOR}=${operator.publicKey}`, "--discovery", "all"]);
for (const [name, id] of ids) {
  const file = join(out, `${name}.env`);
  const text = readFileSync(file, "utf8");
  const placeholder = /^# SVCMESH_SEED=.*$/m;
  if (!placeholder.test(text)) {
    process.stderr.write(`setup: ${file} has no SVCMESH_SEED line to fill\n`);
    process.exit(1);
  }
  writeSecret(file, text.replace(placeholder, `SVCMESH_SEED=${id.seed}`));
}
writeSecret(join(out, "operator.env"), `# the operator user (unrestricted at the broker): svcmesh apply\nSVCMESH_SEED=${operator.seed}\n`);
// Without it, anything that reaches a node's cluster port could join as a route and
// receive every message, whatever the users' permissions say.
writeSecret(join(out, "cluster.env"), `# compose --env-file: the password every route between the NATS nodes presents\nNATS_ROUTE_PASSWORD=${randomBytes(24).toString("base64url")}\n`);

const shown = relative(process.cwd(), out) || ".";
process.stdout.write(
  [
    `wrote ${shown}/: policies.yaml, authorization.conf, ${names.map((n) => `${n}.env`).join(", ")}, operator.env, cluster.env`,
    ...names.map((n) => `  ${n}: ${ids.get(n).publicKey}`),
    `  ${OPERATOR} (nats-config --operator): ${operator.publicKey}`,
    "",
  ].join("\n"),
);
