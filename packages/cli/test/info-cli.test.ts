// `svcmesh info` as a child process against a real nats-server and services started
// in-process with the library. Run `pnpm build` first.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect, type Mesh } from "svcmesh";
import { applyPolicy } from "svcmesh/internal";
import { z } from "zod";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { type CliOptions, lines, runCli } from "./run-cli.ts";

const cli = (args: string[], opts: CliOptions = {}) => runCli(args, { ...opts, env: { NATS_URL: server.url, ...opts.env } });

let server: NatsServer;
let mesh: Mesh;
const ids: string[] = [];

const Claim = z.object({ claimId: z.string(), usd: z.number().positive() });

before(async () => {
  server = await startNatsServer();
  mesh = await connect({ servers: server.url, name: "host" });
  const v2 = {
    reimburse: {
      description: "pay a claim back",
      idempotent: true,
      maxConcurrent: 64,
      input: Claim,
      output: z.object({ txn: z.string() }),
      handler: (req: z.infer<typeof Claim>) => ({ txn: `T-${req.claimId}` }),
    },
    refund: { handler: () => ({ ok: true }) },
  };
  const rateLimits = { claims: { rps: 50, burst: 100 }, "*": { rps: 10 } };
  ids.push((await mesh.serve({ name: "payments", version: "2.1.0", rateLimits, endpoints: v2 })).id);
  ids.push((await mesh.serve({ name: "payments", version: "2.1.0", rateLimits, endpoints: v2 })).id);
  await mesh.serve({ name: "payments", version: "1.0.0", endpoints: { reimburse: { input: z.object({ id: z.string() }), handler: () => ({ legacy: true }) } } });
});

after(async () => {
  await mesh?.close();
  await server?.stop();
});

describe("svcmesh info", () => {
  test("--json: versions, instances, endpoints with schemas and flags, rate limits", async () => {
    const r = await cli(["--json", "info", "payments", "--wait", "1000"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lines(r.stdout).length, 1);
    const d = JSON.parse(r.stdout) as {
      service: string;
      versions: { version: string; instances: string[]; rateLimits: unknown; endpoints: Record<string, unknown>[] }[];
    };
    assert.equal(d.service, "payments");
    assert.deepEqual(d.versions.map((v) => [v.version, v.instances.length]), [["2.1.0", 2], ["1.0.0", 1]]);
    const [v2, v1] = d.versions as [typeof d.versions[0], typeof d.versions[0]];
    assert.deepEqual(v2.instances, [...ids].sort());
    assert.deepEqual(v2.rateLimits, { claims: { rps: 50, burst: 100 }, "*": { rps: 10, burst: 10 } });
    assert.equal(v1.rateLimits, null);
    assert.deepEqual(v2.endpoints.map((e) => e.name), ["refund", "reimburse"]);
    const reimburse = v2.endpoints[1]!;
    assert.equal(reimburse.subject, "svc.payments.v2.reimburse");
    assert.equal(reimburse.description, "pay a claim back");
    assert.equal(reimburse.idempotent, true);
    assert.equal(reimburse.maxConcurrent, 64);
    const input = reimburse.input as { type: string; properties: Record<string, { type: string }>; required: string[] };
    assert.equal(input.type, "object");
    assert.deepEqual(input.properties.claimId, { type: "string" });
    assert.equal(input.properties.usd?.type, "number");
    assert.deepEqual([...input.required].sort(), ["claimId", "usd"]);
    assert.deepEqual((reimburse.output as { properties: unknown }).properties, { txn: { type: "string" } });
    const refund = v2.endpoints[0]!;
    assert.equal(refund.idempotent, false);
    assert.equal("maxConcurrent" in refund, false);
    assert.deepEqual(refund.input, {});
  });

  test("human output: a summary per version and per endpoint its flags and schemas", async () => {
    const r = await cli(["info", "payments", "--wait", "1000"]);
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.equal(out[0], "payments");
    assert.equal(out[1], `version 2.1.0  2 instances: ${[...ids].sort().join(", ")}`);
    assert.equal(out[2], "  rate limits: claims 50/s (burst 100), * 10/s (burst 10)  (from code)");
    assert.ok(out.includes("  refund  not idempotent, no bulkhead  (svc.payments.v2.refund)"), r.stdout);
    assert.ok(out.includes("    input:  any (no schema)"), r.stdout);
    const at = out.indexOf("  reimburse  idempotent, max 64 concurrent (from code)  (svc.payments.v2.reimburse)");
    assert.ok(at > 0, r.stdout);
    assert.equal(out[at + 1], "    description: pay a claim back");
    // Too long for one line: printed below its label, the parts that fit kept on one line.
    assert.deepEqual(out.slice(at + 2, at + 11), [
      "    input:",
      "      {",
      '        "type": "object",',
      '        "properties": {',
      '          "claimId": {"type":"string"},',
      '          "usd": {"type":"number","exclusiveMinimum":0}',
      "        },",
      '        "required": ["claimId","usd"]',
      "      }",
    ]);
    assert.deepEqual(out.slice(at + 11, at + 18), [
      "    output:",
      "      {",
      '        "type": "object",',
      '        "properties": {"txn":{"type":"string"}},',
      '        "required": ["txn"],',
      '        "additionalProperties": false',
      "      }",
    ]);
    assert.ok(!r.stdout.includes("$schema"), "the dialect line is left out");
    assert.ok(out.includes("version 1.0.0  1 instance: " + out.find((l) => l.startsWith("version 1.0.0"))!.split(": ")[1]));
    assert.ok(out.includes("  rate limits: none"), r.stdout);
    // A short schema stays on its line.
    assert.equal(out.at(-2), '    input:  {"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}');
    assert.equal(out.at(-1), "    output: any (no schema)");
  });

  test("an unknown service: exit 1 with one line", async () => {
    const r = await cli(["info", "nosuch", "--wait", "500"]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "svcmesh: no running service named nosuch\n");
    const j = await cli(["--json", "info", "nosuch", "--wait", "500"]);
    assert.equal(j.code, 1);
    assert.deepEqual(JSON.parse(j.stderr), { error: { code: "NOT_FOUND", message: "no running service named nosuch" } });
  });

  test("a name that cannot be a service is a usage error (exit 2)", async () => {
    const r = await cli(["info", "pay.*"]);
    assert.equal(r.code, 2);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: command-argument value 'pay\.\*' is invalid for argument 'service'\. "pay\.\*" is not a service name\./);
  });

  test("--help exits 0 and describes the command", async () => {
    const r = await cli(["info", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: svcmesh info \[options\] <service>/);
    for (const o of [/--wait <ms>/, /--json/, /--server <url>/, /input_schema|JSON\s+Schemas/]) assert.match(r.stdout, o);
  });

  test("unreachable NATS: exit 1, one line", async () => {
    const r = await runCli(["info", "payments"], { env: { NATS_URL: "nats://127.0.0.1:1" } });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /);
  });
});

// The limits instances enforce: the code's, or where the policy in force sets them, the policy's.
describe("svcmesh info: enforced limits and where they come from", () => {
  let js: NatsServer;
  let jsMesh: Mesh;
  const jsCli = (args: string[]) => runCli(args, { env: { NATS_URL: js.url } });

  interface Enforced {
    policyRevision: number | null;
    policyError?: string;
    versions: {
      rateLimits: unknown;
      enforcedRateLimits: unknown;
      rateLimitsFrom: string;
      endpoints: { name: string; maxConcurrent?: number; enforcedMaxConcurrent?: number; maxConcurrentFrom: string }[];
    }[];
  }
  const bulkheads = (d: Enforced) => d.versions[0]!.endpoints.map((e) => [e.name, e.maxConcurrent, e.enforcedMaxConcurrent, e.maxConcurrentFrom]);
  const codeLimits = { claims: { rps: 50, burst: 100 }, "*": { rps: 10, burst: 10 } };

  before(async () => {
    js = await startNatsServer({ jetstream: true });
    jsMesh = await connect({ servers: js.url, name: "host", logLevel: "silent" });
    await jsMesh.serve({
      name: "payments",
      version: "2.1.0",
      rateLimits: { claims: { rps: 50, burst: 100 }, "*": { rps: 10 } },
      endpoints: {
        reimburse: { maxConcurrent: 64, handler: () => ({ ok: true }) },
        refund: { handler: () => ({ ok: true }) },
        status: { maxConcurrent: 4, handler: () => ({ ok: true }) },
      },
    });
  });

  after(async () => {
    await jsMesh?.close();
    await js?.stop();
  });

  test("no policy applied: the code's limits, from code", async () => {
    const r = await jsCli(["--json", "info", "payments", "--wait", "1000"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const d = JSON.parse(r.stdout) as Enforced;
    assert.equal(d.policyRevision, null);
    assert.equal("policyError" in d, false);
    assert.deepEqual(d.versions[0]!.enforcedRateLimits, codeLimits);
    assert.equal(d.versions[0]!.rateLimitsFrom, "code");
    assert.deepEqual(bulkheads(d), [["refund", undefined, undefined, "code"], ["reimburse", 64, 64, "code"], ["status", 4, 4, "code"]]);
    const text = await jsCli(["info", "payments", "--wait", "1000"]);
    assert.equal(text.code, 0, text.stderr);
    assert.ok(lines(text.stdout).includes("  rate limits: claims 50/s (burst 100), * 10/s (burst 10)  (from code)"), text.stdout);
    assert.ok(lines(text.stdout).includes("  reimburse  not idempotent, max 64 concurrent (from code)  (svc.payments.v2.reimburse)"), text.stdout);
  });

  test("a policy that sets limits: its limits are the ones shown as enforced, with its revision, the code's beside them", async () => {
    const applied = await applyPolicy(jsMesh.nc, [
      "version: 1",
      "services:",
      "  payments:",
      '    rateLimits: { "*": { rps: 5 } }',
      "    endpoints:",
      "      reimburse: { maxConcurrent: 8 }",
      "      refund: { maxConcurrent: 2 }",
      "",
    ].join("\n"), { by: "test" });
    const rev = applied.revision;

    const r = await jsCli(["--json", "info", "payments", "--wait", "1000"]);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as Enforced;
    assert.equal(d.policyRevision, rev);
    const v = d.versions[0]!;
    // Replaced whole: the code's "claims" limit is gone, not merged.
    assert.deepEqual(v.enforcedRateLimits, { "*": { rps: 5, burst: 5 } });
    assert.equal(v.rateLimitsFrom, "policy");
    assert.deepEqual(v.rateLimits, codeLimits, "the code's limits stay in rateLimits");
    // Per endpoint: the policy's bulkhead where it sets one, the code's elsewhere.
    assert.deepEqual(bulkheads(d), [["refund", undefined, 2, "policy"], ["reimburse", 64, 8, "policy"], ["status", 4, 4, "code"]]);

    const text = await jsCli(["info", "payments", "--wait", "1000"]);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stderr, "");
    const out = lines(text.stdout);
    assert.equal(out[2], `  rate limits: * 5/s (burst 5)  (from policy revision ${rev}; code: claims 50/s (burst 100), * 10/s (burst 10))`);
    assert.ok(out.includes(`  refund  not idempotent, max 2 concurrent (from policy revision ${rev}; code: no bulkhead)  (svc.payments.v2.refund)`), text.stdout);
    assert.ok(out.includes(`  reimburse  not idempotent, max 8 concurrent (from policy revision ${rev}; code: 64)  (svc.payments.v2.reimburse)`), text.stdout);
    assert.ok(out.includes("  status  not idempotent, max 4 concurrent (from code)  (svc.payments.v2.status)"), text.stdout);
  });

  test("a policy that cannot be read (no JetStream): one line on stderr, the code's limits", async () => {
    // The suite's first server runs without JetStream.
    const r = await cli(["info", "payments", "--wait", "1000"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: warning: cannot read the policy \(UNAVAILABLE: .*JetStream is not available.*\): showing the limits in the service's code/);
    assert.ok(lines(r.stdout).includes("  rate limits: claims 50/s (burst 100), * 10/s (burst 10)  (from code)"), r.stdout);
    const j = await cli(["--json", "info", "payments", "--wait", "1000"]);
    assert.equal(j.code, 0, j.stderr);
    assert.equal(j.stderr, "");
    const d = JSON.parse(j.stdout) as Enforced;
    assert.equal(d.policyRevision, null);
    assert.match(d.policyError ?? "", /JetStream is not available/);
    assert.equal(d.versions[0]!.rateLimitsFrom, "code");
  });
});
