// `svcmesh apply`, `policy show|diff|schema` as child processes against a real
// nats-server with JetStream. Run `pnpm build` first.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect } from "nats";
import { getPolicy, POLICY_APPLIED_SUBJECT, decodeBody } from "svcmesh/internal";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { jsonError, runCli } from "./run-cli.ts";

const CLAIMS = "UB7P3EE5LR4P3MQPQRK7C3MR27EVUAYU65RKDAN54OHAMINCATBDUSD7";
const PAYMENTS = "UBOYHG7ZGBVUY7V3C6GWNQAOHLBVVU5AP5FEKASRUQVS5L6Q4LHBVMW3";

const doc = (canary: number, extra = "") => `version: 1
identities:
  claims:   { key: ${CLAIMS}, roles: [CLAIMS_CLERK] }
  payments: { key: ${PAYMENTS} }
services:
  payments:
    allow: [claims]           # deny everyone else
    traffic: { "2.1.0": ${100 - canary}, "2.2.0": ${canary} }
${extra}`;

const INVALID = `version: 1
services:
  payments:
    allow: claims
    timeoutMs: -5
`;

let server: NatsServer;
let dir: string;

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const cli = (args: string[], env: Record<string, string> = {}) => runCli(args, { env: { NATS_URL: server.url, ...env } });

before(async () => {
  server = await startNatsServer({ jetstream: true });
  dir = mkdtempSync(join(tmpdir(), "svcmesh-policy-cli-"));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("svcmesh apply / policy", () => {
  test("nothing applied yet: show says the mesh is open; diff shows everything as added", async () => {
    const show = await cli(["policy", "show"]);
    assert.equal(show.code, 0, show.stderr);
    assert.equal(show.stdout, "no policy applied (the mesh is open)\n");
    const json = await cli(["policy", "show", "--json"]);
    assert.deepEqual(JSON.parse(json.stdout), { revision: null, sha: null, text: null, policy: null });
    const diff = await cli(["policy", "diff", file("first.yaml", doc(10))]);
    assert.equal(diff.code, 0, diff.stderr);
    assert.match(diff.stdout, /^against no policy \(the mesh is open\)\n\+ version: 1\n\+ identities: /);
  });

  test("apply prints the new revision; show prints the YAML as written; the event goes out", async () => {
    const nc = await natsConnect({ servers: server.url });
    const events: Record<string, unknown>[] = [];
    nc.subscribe(POLICY_APPLIED_SUBJECT, { callback: (_e, m) => events.push(decodeBody(m.data) as Record<string, unknown>) });
    await nc.flush();

    const r = await cli(["apply", file("v1.yaml", doc(10)), "--by", "alice"]);
    assert.equal(r.code, 0, r.stderr);
    const rev = Number(/^applied revision (\d+) \(none before; \d+ changes\)\n$/.exec(r.stdout)?.[1]);
    assert.ok(rev > 0, r.stdout);
    assert.equal((await getPolicy(nc))?.revision, rev);

    const show = await cli(["policy", "show"]);
    assert.equal(show.code, 0, show.stderr);
    const [header, ...rest] = show.stdout.split("\n");
    assert.match(header!, new RegExp(`^# svcmesh policy in force: revision ${rev}, sha256 [0-9a-f]{64}$`));
    assert.equal(rest.join("\n"), doc(10), "the text as applied, comments included");

    const json = JSON.parse((await cli(["policy", "show", "--json"])).stdout) as { revision: number; text: string; policy: { services: unknown } };
    assert.equal(json.revision, rev);
    assert.equal(json.text, doc(10));
    assert.ok(json.policy.services);

    const until = Date.now() + 3000;
    while (events.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(events[0]?.type, "policy_applied");
    assert.equal(events[0]?.revision, rev);
    assert.equal(events[0]?.by, "alice");
    await nc.close();
  });

  test("diff: the changes a file would make, nothing applied", async () => {
    const before = (await cli(["policy", "show", "--json"])).stdout;
    const r = await cli(["policy", "diff", file("v2.yaml", doc(50))]);
    assert.equal(r.code, 0, r.stderr);
    const rev = (JSON.parse(before) as { revision: number }).revision;
    assert.equal(r.stdout, `against revision ${rev}\n~ services.payments.traffic["2.1.0"]: 90 → 50\n~ services.payments.traffic["2.2.0"]: 10 → 50\n`);
    const same = await cli(["policy", "diff", file("same.yaml", doc(10))]);
    assert.equal(same.stdout, `against revision ${rev}\nno changes\n`);
    const json = JSON.parse((await cli(["policy", "diff", file("v2.yaml", doc(50)), "--json"])).stdout) as { revision: number; changes: { path: unknown[]; kind: string }[] };
    assert.equal(json.revision, rev);
    assert.deepEqual(json.changes.map((c) => [c.path, c.kind]), [[["services", "payments", "traffic", "2.1.0"], "changed"], [["services", "payments", "traffic", "2.2.0"], "changed"]]);
    assert.equal((await cli(["policy", "show", "--json"])).stdout, before, "diff applies nothing");
  });

  test("an invalid file: file:line:col errors, exit 1, nothing applied (apply and diff)", async () => {
    const before = (await cli(["policy", "show", "--json"])).stdout;
    const bad = file("bad.yaml", INVALID);
    const r = await cli(["apply", bad]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.deepEqual(r.stderr.trimEnd().split("\n"), [
      `${bad}:4:12: services.payments.allow: Invalid input: expected array, received string`,
      `${bad}:5:16: services.payments.timeoutMs: Too small: expected number to be >0`,
      `svcmesh: ${bad}: invalid policy document, 2 errors; nothing applied`,
    ]);
    const json = await cli(["apply", bad, "--json"]);
    assert.equal(json.code, 1);
    const err = JSON.parse(json.stderr) as { error: { code: string; details: { errors: { line: number }[] } } };
    assert.equal(err.error.code, "BAD_REQUEST");
    assert.deepEqual(err.error.details.errors.map((e) => e.line), [4, 5]);
    const diff = await cli(["policy", "diff", bad]);
    assert.equal(diff.code, 1);
    assert.match(diff.stderr, /bad\.yaml:4:12: /);
    assert.equal((await cli(["policy", "show", "--json"])).stdout, before, "the last good one stays");
  });

  test("a file that cannot be read: exit 1, one line; BAD_REQUEST with --json", async () => {
    const missing = join(dir, "nonexist.yaml");
    const r = await cli(["apply", missing]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `svcmesh: cannot read ${missing}: ENOENT\n`);
    const j = await cli(["apply", missing, "--json"]);
    assert.equal(j.code, 1);
    assert.deepEqual(jsonError(j.stderr), { code: "BAD_REQUEST", message: `cannot read ${missing}: ENOENT` });
  });

  test("apply again: the next revision; --if-revision refuses a stale one; --json", async () => {
    const rev = (JSON.parse((await cli(["policy", "show", "--json"])).stdout) as { revision: number }).revision;
    const r = await cli(["apply", file("v3.yaml", doc(30)), "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { revision: number; previous: number; changes: number; sha: string };
    assert.equal(out.previous, rev);
    assert.ok(out.revision > rev);
    assert.equal(out.changes, 2);
    const stale = await cli(["apply", file("v4.yaml", doc(40)), "--if-revision", String(rev)]);
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /^svcmesh: BAD_REQUEST: the policy changed meanwhile/);
    const fresh = await cli(["apply", file("v4.yaml", doc(40)), "--if-revision", String(out.revision)]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.match(fresh.stdout, new RegExp(`^applied revision \\d+ \\(was ${out.revision}; 2 changes\\)\\n$`));
  });

  test("schema: the JSON Schema, no server needed", async () => {
    const r = await cli(["policy", "schema"], { NATS_URL: "nats://127.0.0.1:1" });
    assert.equal(r.code, 0, r.stderr);
    const schema = JSON.parse(r.stdout) as { type: string; properties: Record<string, unknown> };
    assert.equal(schema.type, "object");
    assert.ok(schema.properties.version && schema.properties.services);
    const compact = await cli(["policy", "schema", "--json"], { NATS_URL: "nats://127.0.0.1:1" });
    assert.equal(compact.stdout.trimEnd().split("\n").length, 1);
    assert.deepEqual(JSON.parse(compact.stdout), schema);
  });

  test("apply validates before connecting: an invalid file with no server is still exit 1 with line errors", async () => {
    const r = await cli(["apply", file("bad2.yaml", INVALID)], { NATS_URL: "nats://127.0.0.1:1" });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad2\.yaml:4:12: /);
    assert.doesNotMatch(r.stderr, /cannot connect/);
  });
});
