// svcmesh identity new <name>: a fresh nkey identity for a service. Local only: no
// NATS connection.
// svcmesh identity add <name> <publicKey>: registers (or replaces) identities.<name> in
// the policy in force. The stored YAML is edited in place (yaml's Document API, so the
// operator's comments and key order stay), validated, and applied only over the
// revision that was read: a concurrent change is never overwritten.
import { userInfo } from "node:os";
import { isDeepStrictEqual } from "node:util";
import type { Command } from "commander";
import { newIdentity, validIdentityName } from "svcmesh";
import { applyPolicy, getPolicy, isMeshError, isNkeyUserPublicKey, parsePolicy, POLICY_BUCKET, type PolicyError } from "svcmesh/internal";
import { Document, isMap, isPair, isScalar, type Node, type Pair, parseDocument, stringify, type YAMLMap } from "yaml";
import { DEFAULT_CLIENT_NAME, withMesh } from "../connection.js";
import { CliError, usageError } from "../errors.js";
import { globalOptions } from "../options.js";
import { printJson, printLine } from "../output.js";

interface AddOptions {
  roles?: string[];
  clearances?: string[];
  by?: string;
}

/** What `identity add` writes when no policy is in force: every registered identity may call everything. */
export const OPEN_DEFAULTS_NOTE = 'defaults.allow is ["*"]: every registered identity may call every service until the policy says otherwise';

/**
 * Once a policy registers identities, a call without a registered identity's token is
 * refused (UNAUTHENTICATED): the first `identity add` closes the mesh to unregistered callers.
 */
export const FIRST_IDENTITY_NOTE =
  "this is the policy's first identity: from now on every caller must connect with a registered identity's seed (connect({ seed }) or SVCMESH_SEED, also for `svcmesh call`); calls from others are refused UNAUTHENTICATED. Register each caller with `svcmesh identity add`";

function list(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

function defaultBy(): string {
  try {
    return userInfo().username || DEFAULT_CLIENT_NAME;
  } catch {
    return DEFAULT_CLIENT_NAME;
  }
}

function keyProblem(key: string): string {
  if (/^S[A-Z2-7]{55,}$/.test(key)) return "this is an nkey seed (the secret), not a public key: give the public key (starting with U) and keep the seed out of the policy";
  if (key.length === 56 && /^[NAOPC]/.test(key)) return `this is an nkey public key of another kind (${key[0]}...): a service identity is a user key, starting with U`;
  return "not an nkey public user key (56 characters A-Z2-7 starting with U, as `svcmesh identity new` prints)";
}

/** The identity entry: { key, roles?, clearances? }. */
function entry(key: string, opts: AddOptions): Record<string, unknown> {
  return {
    key,
    ...(opts.roles && opts.roles.length > 0 ? { roles: opts.roles } : {}),
    ...(opts.clearances && opts.clearances.length > 0 ? { clearances: opts.clearances } : {}),
  };
}

/** A new document for a mesh with no policy: this identity, and a mesh still open to all. */
function newDocumentText(name: string, key: string, opts: AddOptions): string {
  const doc = new Document({ version: 1, identities: {}, defaults: { allow: ["*"] } });
  doc.setIn(["identities", name], doc.createNode(entry(key, opts), { flow: true }));
  doc.setIn(["defaults", "allow"], doc.createNode(["*"], { flow: true }));
  doc.commentBefore = " svcmesh policy, created by `svcmesh identity add` (edit it, then `svcmesh apply`)";
  const defaults = (doc.contents as YAMLMap).items.find((p) => isScalar(p.key) && p.key.value === "defaults");
  if (defaults && isScalar(defaults.key)) defaults.key.commentBefore = " every registered identity may call every service until the policy says otherwise; callers without one are refused";
  return doc.toString({ lineWidth: 0 });
}

/**
 * Sets identities.<name> in the operator's text. The common cases (a new name under a
 * block `identities:` map, or a one-line entry replaced) are spliced into the text as
 * it is, so nothing else changes, not even spacing; any other shape goes through the
 * yaml Document (comments and order kept, spacing normalized). The splice is used only
 * when it means exactly what the Document edit means.
 */
function editPolicyText(text: string, name: string, key: string, opts: AddOptions): { text: string; replaced: boolean } {
  const edited = editDocumentText(text, name, key, opts);
  const spliced = spliceText(text, name, stringify(entry(key, opts), { collectionStyle: "flow", lineWidth: 0 }).trimEnd());
  if (spliced !== undefined) {
    const check = parseDocument(spliced, { uniqueKeys: true });
    if (check.errors.length === 0 && isDeepStrictEqual(check.toJS(), parseDocument(edited.text).toJS())) return { text: spliced, replaced: edited.replaced };
  }
  return edited;
}

function spliceText(text: string, name: string, flow: string): string | undefined {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0 || !isMap(doc.contents)) return undefined;
  const ids = doc.contents.items.find((p) => isScalar(p.key) && p.key.value === "identities");
  if (!ids || !isMap(ids.value) || ids.value.flow || ids.value.items.length === 0) return undefined;
  const items = ids.value.items;
  const existing = items.find((p) => isScalar(p.key) && p.key.value === name);
  if (existing) {
    const v = existing.value;
    if (!isMap(v) || !v.flow || !v.range || text.slice(v.range[0], v.range[1]).includes("\n")) return undefined;
    return text.slice(0, v.range[0]) + flow + text.slice(v.range[1]);
  }
  const firstKey = items[0]?.key as Node | undefined;
  const lastItem = items[items.length - 1];
  if (!firstKey?.range || !lastItem) return undefined;
  const lineStart = text.lastIndexOf("\n", firstKey.range[0] - 1) + 1;
  const indent = text.slice(lineStart, firstKey.range[0]);
  if (!/^ +$/.test(indent)) return undefined;
  let end = ((lastItem.value ?? lastItem.key) as Node | null)?.range?.[1];
  if (end === undefined) return undefined;
  while (end > 0 && /\s/.test(text[end - 1]!)) end--;
  const nl = text.indexOf("\n", end);
  const line = `${indent}${name}: ${flow}`;
  return nl < 0 ? `${text}\n${line}\n` : `${text.slice(0, nl)}\n${line}${text.slice(nl)}`;
}

/** Sets identities.<name> in the operator's document, keeping comments and order. */
function editDocumentText(text: string, name: string, key: string, opts: AddOptions): { text: string; replaced: boolean } {
  const doc = parseDocument<Node, false>(text, { uniqueKeys: true });
  if (doc.errors.length > 0 || !isMap(doc.contents)) throw new CliError("the policy in force cannot be edited (its YAML is not a mapping); nothing applied", "BAD_REQUEST");
  const top = doc.contents;
  let ids = top.items.find((p): p is Pair => isPair(p) && isScalar(p.key) && p.key.value === "identities");
  if (!ids) {
    // Put identities right after `version`, where people look for them.
    const pair = doc.createPair("identities", doc.createNode({}));
    const at = top.items.findIndex((p) => isScalar(p.key) && p.key.value === "version");
    top.items.splice(at + 1, 0, pair);
    ids = pair;
  } else if (!isMap(ids.value)) {
    // `identities:` with nothing under it.
    const comment = isScalar(ids.value) ? ids.value.comment : undefined;
    ids.value = doc.createNode({});
    if (comment) (ids.value as YAMLMap).commentBefore = comment;
  }
  const map = ids.value as YAMLMap;
  const existing = map.items.find((p) => isScalar(p.key) && p.key.value === name);
  const value = entry(key, opts);
  if (existing && isMap(existing.value)) {
    // Replace the fields, keep the node (and its comments and flow/block style).
    const node = existing.value;
    const flow = node.flow === true;
    for (const field of ["key", "roles", "clearances"] as const) {
      if (value[field] === undefined) node.delete(field);
      else node.set(field, field === "key" ? value[field] : doc.createNode(value[field], { flow: true }));
    }
    node.flow = flow;
  } else if (existing) {
    existing.value = doc.createNode(value, { flow: true });
  } else {
    map.items.push(doc.createPair(name, doc.createNode(value, { flow: true })));
    if (map.flow && map.items.length === 1) map.flow = false;
  }
  return { text: doc.toString({ lineWidth: 0 }), replaced: existing !== undefined };
}

function firstError(errors: readonly PolicyError[]): string {
  const e = errors[0];
  if (!e) return "invalid policy document";
  return `${e.path ? `${e.path}: ` : ""}${e.message}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ""}`;
}

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

  identity
    .command("add")
    .description("register (or replace) an identity's public key, roles and clearances in the policy in force")
    .argument("<name>", "the service (caller) name")
    .argument("<publicKey>", "its nkey public user key (U..., from `svcmesh identity new`)")
    .option("--roles <roles>", "roles it holds, comma-separated (e.g. CLAIMS_CLERK)", list)
    .option("--clearances <classes>", "data classes it is cleared for, comma-separated (e.g. PII,FERPA)", list)
    .option("--by <name>", "who changes it, for the policy_applied event (default: the OS user)")
    .addHelpText("after", `
Reads the policy in force, sets identities.<name> = { key, roles, clearances } in its
YAML (comments and order kept; an existing entry is replaced whole, so give every
role and clearance it should keep), validates it and applies it only over the
revision read: if someone applied a change meanwhile, nothing is applied (exit 1);
run it again. With no policy applied yet, a minimal document is created with
defaults.allow: ["*"], so every registered identity may call every service.
Once a policy has identities, every caller must connect with a registered identity's
seed (connect({ seed }) or SVCMESH_SEED): the others are refused (UNAUTHENTICATED).
The first identity added says so.
A key that is not an nkey public user key is refused (exit 2); nothing is sent.
Prints the new revision. With --json: {name, revision, previous, created, replaced,
firstIdentity, sha, warnings} (previous: null and created: true when there was no policy).
Policies live in the NATS KV bucket ${POLICY_BUCKET}.

Example:
  $ svcmesh identity add claims UB7P3EE5... --roles CLAIMS_CLERK --clearances PII,FERPA
  added identity claims: applied revision 9 (was 8)`)
    .action(async (name: string, key: string, opts: AddOptions, command: Command) => {
      const globals = globalOptions(command);
      if (!validIdentityName(name)) {
        throw usageError(`invalid identity name ${JSON.stringify(name)}: use [a-z0-9-], 1-64 characters, not trace, events or audit`);
      }
      key = key.trim();
      if (!isNkeyUserPublicKey(key)) throw usageError(`invalid public key for ${name}: ${keyProblem(key)}`);
      // The entry alone must be valid (labels): a command-line mistake, before any connection.
      const alone = parsePolicy(newDocumentText(name, key, opts));
      if (!alone.ok) throw usageError(`invalid identity ${name}: ${firstError(alone.errors)}`);

      const result = await withMesh(globals, DEFAULT_CLIENT_NAME, async (mesh) => {
        const current = await getPolicy(mesh.nc);
        const edited = current ? editPolicyText(current.text, name, key, opts) : { text: newDocumentText(name, key, opts), replaced: false };
        const parsed = parsePolicy(edited.text);
        if (!parsed.ok) {
          throw new CliError(`the policy with identity ${name} would be invalid: line ${parsed.errors[0]?.line ?? 0}: ${firstError(parsed.errors)}; nothing applied`, "BAD_REQUEST");
        }
        try {
          const applied = await applyPolicy(mesh.nc, edited.text, { by: opts.by ?? defaultBy(), ifRevision: current?.revision ?? 0 });
          const firstIdentity = Object.keys(current?.policy.identities ?? {}).length === 0;
          return { applied, previous: current?.revision ?? null, replaced: edited.replaced, firstIdentity };
        } catch (e) {
          const details = isMeshError(e) ? (e.details as { expected?: unknown; current?: unknown } | undefined) : undefined;
          if (details && "expected" in details) {
            throw new CliError(
              `the policy changed while identity ${name} was being added (read revision ${current?.revision ?? "none"}, in force now: ${String(details.current ?? "none")}); nothing applied: run the command again`,
              "BAD_REQUEST",
            );
          }
          throw e;
        }
      });
      const { applied, previous, replaced, firstIdentity } = result;
      const created = previous === null;
      if (globals.json) {
        return printJson({ name, revision: applied.revision, previous, created, replaced, firstIdentity, sha: applied.sha, warnings: applied.warnings }, false);
      }
      const verb = replaced ? "replaced" : "added";
      printLine(`${verb} identity ${name}: applied revision ${applied.revision} (${created ? "none before" : `was ${previous}`})`);
      if (created) printLine(`no policy was in force: created one with ${OPEN_DEFAULTS_NOTE}`);
      if (firstIdentity) printLine(FIRST_IDENTITY_NOTE);
    });
}
