// `svcmesh audit` as a child process against a real nats-server with JetStream: the
// records are written by the library for calls made in-process (a malformed one is
// stored by hand). Run `pnpm build` first.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { connect, type Mesh } from "svcmesh";
import { AUDIT_STREAM, type AuditRecord, auditSubject } from "svcmesh/internal";
import { z } from "zod";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { type CliOptions, jsonError, lines, runCli } from "./run-cli.ts";

const cli = (args: string[], opts: CliOptions = {}) => runCli(args, { ...opts, env: { NATS_URL: server.url, ...opts.env } });

const records = (stdout: string): AuditRecord[] => lines(stdout).map((l) => JSON.parse(l) as AuditRecord);

let server: NatsServer;
let noJs: NatsServer;
let host: Mesh;
let claims: Mesh;
let ops: Mesh;
let nc: NatsConnection;
/** Between the first calls and the last ones. */
let middle: string;

/** Waits (at most 10 s) until the stream holds `n` messages. */
async function stored(n: number): Promise<void> {
  const jsm = await nc.jetstreamManager();
  const deadline = Date.now() + 10_000;
  let have = -1;
  while (Date.now() < deadline) {
    have = await jsm.streams.info(AUDIT_STREAM).then((i) => i.state.messages, () => -1);
    if (have >= n) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(have, n, "audit records stored");
}

before(async () => {
  server = await startNatsServer({ jetstream: true });
  noJs = await startNatsServer();
  nc = await natsConnect({ servers: server.url });
  host = await connect({ servers: server.url, name: "host" });
  claims = await connect({ servers: server.url, name: "claims", defaults: { breaker: { enabled: false } } });
  ops = await connect({ servers: server.url, name: "ops" });
  await host.serve({
    name: "payments",
    version: "2.1.0",
    endpoints: {
      reimburse: { input: z.object({ claimId: z.string() }), handler: (req: { claimId: string }) => ({ txn: `T-${req.claimId}` }) },
      explode: {
        handler: () => {
          throw new Error("boom");
        },
      },
    },
  });
  await host.serve({ name: "auth", version: "1.0.0", endpoints: { verify: { handler: () => ({ valid: true }) } } });
});

after(async () => {
  await Promise.allSettled([claims?.close(), ops?.close(), host?.close(), nc?.drain()]);
  await Promise.allSettled([server?.stop(), noJs?.stop()]);
});

describe("svcmesh audit", () => {
  test("before any service wrote a record: exit 1, one line, and the stream is not created", async () => {
    const r = await cli(["audit"]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, `svcmesh: no audit records: the stream ${AUDIT_STREAM} does not exist (no service has written one yet, or JetStream is off)\n`);
    const j = await cli(["audit", "--json"]);
    assert.equal(j.code, 1);
    assert.equal(jsonError(j.stderr).code, "NOT_FOUND");
    const jsm = await nc.jetstreamManager();
    assert.deepEqual((await jsm.streams.names().next()).filter((n) => n === AUDIT_STREAM), []);
  });

  test("lists the records the library wrote for real calls: a table, oldest first", async () => {
    await claims.call("payments", "reimburse", { claimId: "C1" });
    await claims.call("payments", "explode", {}, { retry: { attempts: 1 } }).catch(() => undefined);
    await stored(2);
    await new Promise((r) => setTimeout(r, 20));
    middle = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await claims.call("payments", "reimburse", { claimId: "C2" });
    await ops.call("auth", "verify", {});
    await stored(4);

    const r = await cli(["audit"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const rows = lines(r.stdout).map((l) => l.split(/\s{2,}/));
    assert.deepEqual(rows[0], ["TIME", "CALLER", "SERVICE.ENDPOINT", "STATUS", "DURATION", "REQUEST-ID"]);
    assert.deepEqual(rows.slice(1).map((row) => row.slice(1, 4)), [
      ["claims", "payments.reimburse", "ok"],
      ["claims", "payments.explode", "HANDLER_ERROR"],
      ["claims", "payments.reimburse", "ok"],
      ["ops", "auth.verify", "ok"],
    ]);
    for (const row of rows.slice(1)) {
      assert.match(row[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.match(row[4]!, /^\d+\.\d\dm?s$/);
      assert.ok(row[5]!.length > 0);
    }
  });

  test("--json: one record per line, as stored", async () => {
    const r = await cli(["--json", "audit"]);
    assert.equal(r.code, 0, r.stderr);
    const all = records(r.stdout);
    assert.equal(all.length, 4);
    const first = all[0]!;
    assert.equal(first.service, "payments");
    assert.equal(first.version, "2.1.0");
    assert.equal(first.endpoint, "reimburse");
    assert.equal(first.caller, "claims");
    assert.equal(first.status, "ok");
    assert.equal(typeof first.instance, "string");
    assert.equal(typeof first.requestId, "string");
    assert.equal(typeof first.traceId, "string");
    assert.equal(typeof first.durationMs, "number");
    assert.ok(Math.abs(first.time - Date.now()) < 60_000);
    assert.equal(new Set(all.map((x) => x.requestId)).size, 4);
  });

  test("a reader that went away (| head): exit 0, nothing on stderr", async () => {
    for (const args of [["audit", "--json"], ["audit"]]) {
      const r = await cli(args, { closeStdout: true });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr, "", args.join(" "));
    }
  });

  test("--service, --caller, --limit and --since filter", async () => {
    const byService = await cli(["--json", "audit", "--service", "payments"]);
    assert.deepEqual(records(byService.stdout).map((x) => x.endpoint), ["reimburse", "explode", "reimburse"]);
    const byCaller = await cli(["--json", "audit", "--caller", "ops"]);
    assert.deepEqual(records(byCaller.stdout).map((x) => [x.caller, x.service, x.endpoint]), [["ops", "auth", "verify"]]);
    const newest = await cli(["--json", "audit", "--service", "payments", "--limit", "2"]);
    assert.deepEqual(records(newest.stdout).map((x) => [x.endpoint, x.status]), [["explode", "HANDLER_ERROR"], ["reimburse", "ok"]]);
    const recent = await cli(["--json", "audit", "--since", middle]);
    assert.deepEqual(records(recent.stdout).map((x) => `${x.caller}>${x.service}.${x.endpoint}`), ["claims>payments.reimburse", "ops>auth.verify"]);
    const hour = await cli(["--json", "audit", "--since", "1h", "--service", "auth"]);
    assert.equal(records(hour.stdout).length, 1);
    const none = await cli(["audit", "--since", new Date(Date.now() + 3_600_000).toISOString()]);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, "no audit records\n");
    const nobody = await cli(["audit", "--service", "ledger"]);
    assert.equal(nobody.code, 0, nobody.stderr);
    assert.equal(nobody.stdout, "no audit records\n");
  });

  test("malformed stored records are skipped with a line on stderr", async () => {
    const js = nc.jetstream();
    await js.publish(auditSubject("junk"), new Uint8Array([0xc1]));
    const r = await cli(["audit", "--service", "junk"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "no audit records\n");
    assert.match(r.stderr, /^svcmesh: skipping malformed audit record #5 on svc\.audit\.junk: body is not msgpack/);
    assert.equal(lines(r.stderr).length, 1);
    const all = await cli(["--json", "audit"]);
    assert.equal(records(all.stdout).length, 4);
    assert.deepEqual(JSON.parse(all.stderr), { skipped: { seq: 5, subject: "svc.audit.junk", reason: (JSON.parse(all.stderr) as { skipped: { reason: string } }).skipped.reason } });
  });

  test("a server without JetStream: exit 1 with one line", async () => {
    const r = await cli(["audit"], { env: { NATS_URL: noJs.url } });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.equal(r.stderr, "svcmesh: no audit records: JetStream is not enabled on the NATS server (or for this account)\n");
    const j = await cli(["audit", "--json"], { env: { NATS_URL: noJs.url } });
    assert.equal(j.code, 1);
    assert.equal(jsonError(j.stderr).code, "UNAVAILABLE");
  });

  test("bad options are one-line usage errors (exit 2)", async () => {
    for (const args of [["audit", "--since", "yesterday"], ["audit", "--limit", "0"], ["audit", "--service", "a.b"]]) {
      const r = await cli(args);
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, /^svcmesh: option '--\w+ <\w+>' argument '.*' is invalid\./);
    }
  });

  test("--help exits 0 and mentions the options", async () => {
    const r = await cli(["audit", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: svcmesh audit/);
    for (const o of [/--service <name>/, /--since <when>/, /--limit <n>/, /--caller <name>/, /--json/, /--server <url>/, /SVC_AUDIT/]) assert.match(r.stdout, o);
  });

  test("unreachable NATS: exit 1, one line", async () => {
    const r = await runCli(["audit"], { env: { NATS_URL: "nats://127.0.0.1:1" } });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /);
  });
});
