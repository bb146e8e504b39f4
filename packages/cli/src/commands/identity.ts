// svcmesh identity new <name>: a fresh nkey identity for a service. Local only: no
// NATS connection. (`identity add`, which registers a key in the live policy, comes
// with the KV-backed policy store.)
import type { Command } from "commander";
import { newIdentity, validIdentityName } from "svcmesh";
import { usageError } from "../errors.js";
import { globalOptions } from "../options.js";
import { printJson, printLine } from "../output.js";

export function registerIdentity(program: Command): void {
  const identity = program
    .command("identity")
    .description("service identities (nkeys): create one, register it in the policy");

  identity
    .command("new")
    .description("create a new identity: prints its seed (the secret) and public key")
    .argument("<name>", "the service (caller) name it is for")
    .addHelpText("after", `
Nothing is stored and no NATS connection is made. The seed is the secret: give it
only to that service (e.g. SVCMESH_SEED=SU... for connect({ name, seed })); whoever
holds it can call as that service. The public key goes into the identities section
of the policy document.
With --json: {name, seed, publicKey, policy} (policy: the YAML line for identities).

Example:
  $ svcmesh identity new claims --json`)
    .action((name: string, _opts: unknown, command: Command) => {
      if (!validIdentityName(name)) {
        throw usageError(`invalid identity name ${JSON.stringify(name)}: use [a-z0-9-], 1-64 characters, not trace, events or audit`);
      }
      const { seed, publicKey } = newIdentity();
      const policy = `${name}: { key: ${publicKey} }`;
      if (globalOptions(command).json) return printJson({ name, seed, publicKey, policy }, false);
      printLine([
        `identity ${name}`,
        ``,
        `seed (SECRET: give it only to ${name}, e.g. as SVCMESH_SEED; anyone holding it can call as ${name}):`,
        `  ${seed}`,
        `public key:`,
        `  ${publicKey}`,
        ``,
        `Add to the identities section of the policy document, then apply it:`,
        ``,
        `identities:`,
        `  ${policy}`,
      ].join("\n"));
    });
}
