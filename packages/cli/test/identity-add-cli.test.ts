// `svcmesh identity add` as a child process against a real nats-server with
// JetStream: creates a policy on an empty mesh, edits the one in force in place
// (comments kept), refuses bad keys. Run `pnpm build` first.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { newIdentity } from "svcmesh";
import { applyPolicy, getPolicy } from "svcmesh/internal";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { runCli } from "./run-cli.ts";

const CLAIMS = "UB7P3EE5LR4P3MQPQRK7C3MR27EVUAYU65RKDAN54OHAMINCATBDUSD7";
const PAYMENTS = "UBOYHG7ZGBVUY7V3C6GWNQAOHLBVVU5AP5FEKASRUQVS5L6Q4LHBVMW3";

let server: NatsServer;
let nc: NatsConnection;

const cli = (args: string[]) => runCli(args, { env: { NATS_URL: server.url } });

before(async () => {
  server = await startNatsServer({ jetstream: true });
  nc = await natsConnect({ servers: server.url });
});

after(async () => {
  await nc?.close();
  await server?.stop();
});

describe("svcmesh identity add", () => {
  test("on an empty mesh: creates a minimal policy open to every registered identity, and says unregistered callers are now refused", async () => {
    assert.equal(await getPolicy(nc), undefined);
    const r = await cli(["identity", "add", "claims", CLAIMS, "--roles", "CLAIMS_CLERK", "--clearances", "PII,FERPA", "--by", "alice"]);
    assert.equal(r.code, 0, r.stderr);
    const m = /^added identity claims: applied revision (\d+) \(none before\)\nno policy was in force: created one with defaults\.allow is \["\*"\]: every registered identity may call every service/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.match(r.stdout, /this is the policy's first identity: from now on every caller must connect with a registered identity's seed .* refused UNAUTHENTICATED/);
    const stored = await getPolicy(nc);
    assert.equal(stored?.revision, Number(m[1]));
    assert.deepEqual(stored.policy.identities, { claims: { key: CLAIMS, roles: ["CLAIMS_CLERK"], clearances: ["PII", "FERPA"] } });
    assert.deepEqual(stored.policy.defaults, { allow: ["*"] });
    assert.equal(stored.policy.version, 1);
    // Readable YAML, one line per identity, as `identity new` suggests writing it.
    assert.match(stored.text, /^ {2}claims: \{ key: U[A-Z2-7]{55}, roles: \[ CLAIMS_CLERK \], clearances: \[ PII, FERPA \] \}$/m);
  });

  test("a second add keeps the first identity, the operator's comments and order", async () => {
    const first = await getPolicy(nc);
    assert.ok(first);
    // The operator edits the document by hand: comments and a service.
    const edited = `${first.text.trimEnd()}
# payments is the sensitive one
services:
  payments:
    allow: [claims]   # only claims may call it
`;
    const applied = await applyPolicy(nc, edited, { by: "alice" });

    const r = await cli(["identity", "add", "payments", PAYMENTS, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { name: string; revision: number; previous: number; created: boolean; replaced: boolean; firstIdentity: boolean };
    assert.equal(out.name, "payments");
    assert.equal(out.previous, applied.revision);
    assert.equal(out.created, false);
    assert.equal(out.replaced, false);
    assert.equal(out.firstIdentity, false, "claims was registered before");
    assert.ok(out.revision > applied.revision);

    const stored = await getPolicy(nc);
    assert.equal(stored?.revision, out.revision);
    assert.deepEqual(Object.keys(stored.policy.identities ?? {}), ["claims", "payments"]);
    assert.deepEqual(stored.policy.identities?.claims, { key: CLAIMS, roles: ["CLAIMS_CLERK"], clearances: ["PII", "FERPA"] });
    assert.deepEqual(stored.policy.identities?.payments, { key: PAYMENTS });
    assert.deepEqual(stored.policy.services?.payments?.allow, ["claims"]);
    for (const comment of ["# payments is the sensitive one", "# only claims may call it", "# svcmesh policy, created by"]) {
      assert.ok(stored.text.includes(comment), `${comment} kept in:\n${stored.text}`);
    }
    // Only the new line differs from what the operator wrote.
    const added = stored.text.split("\n").filter((l) => !edited.split("\n").includes(l));
    assert.deepEqual(added, [`  payments: { key: ${PAYMENTS} }`]);
  });

  test("adding an existing name replaces its entry", async () => {
    const before = await getPolicy(nc);
    const r = await cli(["identity", "add", "payments", PAYMENTS, "--roles", "PAYER"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^replaced identity payments: applied revision \\d+ \\(was ${before?.revision}\\)\\n$`));
    assert.deepEqual((await getPolicy(nc))?.policy.identities?.payments, { key: PAYMENTS, roles: ["PAYER"] });
  });

  test("a key that is not a user public key is refused (exit 2, one line), nothing applied", async () => {
    const before = await getPolicy(nc);
    const seed = newIdentity().seed;
    for (const [key, says] of [
      [seed, /nkey seed/],
      [`A${CLAIMS.slice(1)}`, /another kind/],
      ["not-a-key", /not an nkey public user key/],
      [`${CLAIMS.slice(0, -1)}A`, /not an nkey public user key/], // checksum
    ] as const) {
      const r = await cli(["identity", "add", "audit-x", key]);
      assert.equal(r.code, 2, `${key}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /^svcmesh: invalid public key for audit-x: /);
      assert.match(r.stderr, says);
      assert.ok(!r.stderr.includes(seed), "the seed is not echoed");
    }
    const dup = await cli(["identity", "add", "other", CLAIMS]);
    assert.equal(dup.code, 1, dup.stderr);
    assert.match(dup.stderr, /^svcmesh: .*the same key as identity "claims".*nothing applied\n$/);
    assert.equal((await getPolicy(nc))?.revision, before?.revision);
  });

  test("the policy in force has both identities", async () => {
    const stored = await getPolicy(nc);
    assert.deepEqual(Object.keys(stored?.policy.identities ?? {}).sort(), ["claims", "payments"]);
    const show = await cli(["policy", "show", "--json"]);
    assert.equal(show.code, 0, show.stderr);
    assert.equal((JSON.parse(show.stdout) as { revision: number }).revision, stored?.revision);
  });
});
