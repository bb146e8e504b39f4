// `svcmesh watch` as a child process against a real nats-server: calls are made
// in-process through the library (which publishes their trace records), or trace
// records are published by hand for the malformed and filter cases. Run `pnpm build` first.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { connect, type Mesh, MeshError } from "svcmesh";
import { encodeTraceBatch, type TraceEvent, traceSubject } from "svcmesh/internal";
import { z } from "zod";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { traceRecord } from "../../../test/helpers/trace-record.ts";
import { formatTrace } from "../dist/commands/watch.js";
import { jsonError, keepDoing, lines, runCli, spawnCli } from "./run-cli.ts";


/** A running `svcmesh watch` (killed after 15 s at the latest). */
function watch(args: string[], env: Record<string, string> = {}): ReturnType<typeof spawnCli> {
  return spawnCli(["watch", ...args], { NATS_URL: server.url, ...env }, 15_000);
}

let server: NatsServer;
let host: Mesh;
let claims: Mesh;
let nc: NatsConnection;

before(async () => {
  server = await startNatsServer();
  host = await connect({ servers: server.url, name: "host", audit: { enabled: false } });
  claims = await connect({ servers: server.url, name: "claims", audit: { enabled: false }, trace: { sampleRate: 1, flushMs: 50 } });
  nc = await natsConnect({ servers: server.url });
  await host.serve({
    name: "payments",
    version: "2.1.0",
    endpoints: {
      reimburse: { input: z.object({ claimId: z.string() }), output: z.object({ txn: z.string() }), handler: (req: { claimId: string }) => ({ txn: `T-${req.claimId}` }) },
      explode: {
        handler: () => {
          throw new Error("boom");
        },
      },
    },
  });
});

after(async () => {
  await Promise.allSettled([claims?.close(), host?.close(), nc?.drain()]);
  await server?.stop();
});

const okCall = () => claims.call("payments", "reimburse", { claimId: "C1" }, { timeoutMs: 2000 });
const failingCall = () => claims.call("payments", "explode", {}, { timeoutMs: 2000, retry: { attempts: 1 } }).catch((e: unknown) => e);

const record = (over: Partial<TraceEvent> = {}): TraceEvent => traceRecord({ time: Date.parse("2026-01-05T10:00:01.002Z"), latencyMs: 1.234, ...over });

describe("svcmesh watch", () => {
  test("real calls: one line each (time, caller → service.endpoint, status, latency, trace id); --count exits 0", async () => {
    const w = watch(["--service", "payments", "--count", "3"]);
    await keepDoing(okCall, () => w.child.exitCode !== null || lines(w.out.stdout).length >= 3);
    const r = await w.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const out = lines(r.stdout);
    assert.equal(out.length, 3, r.stdout);
    for (const l of out) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}claims → payments\.reimburse {2}ok {13} *\d+\.\d\dms {2}[0-9a-f]{32}$/);
    assert.ok(!r.stdout.includes("\x1b["), "no colour when stdout is not a terminal");
  });

  test("real calls, --errors --json: only the failed ones, as the published record", async () => {
    const w = watch(["--json", "--errors", "--count", "1"]);
    await keepDoing(async () => {
      await okCall();
      const e = await failingCall();
      assert.ok(e instanceof MeshError && e.code === "HANDLER_ERROR", String(e));
    }, () => w.child.exitCode !== null || lines(w.out.stdout).length >= 1);
    const r = await w.done;
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.equal(out.length, 1, r.stdout);
    const e = JSON.parse(out[0]!) as TraceEvent;
    assert.equal(e.status, "HANDLER_ERROR");
    assert.equal(e.caller, "claims");
    assert.equal(e.service, "payments");
    assert.equal(e.endpoint, "explode");
    assert.equal(e.version, "2.1.0");
    assert.equal(e.attempts, 1);
    assert.match(e.traceId, /^[0-9a-f]{32}$/);
    assert.equal(typeof e.latencyMs, "number");
    assert.equal(typeof e.requestId, "string");
  });

  test("--endpoint filters; attempts show when more than one; malformed records are noted on stderr", async () => {
    const w = watch(["--service", "ledger", "--endpoint", "post", "--count", "2"]);
    await keepDoing(async () => {
      nc.publish(traceSubject("ledger", "other"), encodeTraceBatch([record({ endpoint: "other" })]));
      nc.publish(traceSubject("ledger", "post"), new Uint8Array([0xc1]));
      nc.publish(traceSubject("ledger", "post"), encodeTraceBatch([record(), record({ status: "TIMEOUT", latencyMs: 2000, attempts: 3, traceId: "0af7651916cd43dd8448eb211c80319c" })]));
      await nc.flush();
    }, () => w.child.exitCode !== null || lines(w.out.stdout).length >= 2);
    const r = await w.done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), [
      "2026-01-05T10:00:01.002Z  claims → ledger.post  ok               1.23ms  4bf92f3577b34da6a3ce929d0e0e4736",
      "2026-01-05T10:00:01.002Z  claims → ledger.post  TIMEOUT           2.00s  attempts=3  0af7651916cd43dd8448eb211c80319c",
    ]);
    assert.match(r.stderr, /^svcmesh: skipping 1 malformed trace record on svc\.trace\.ledger\.post\n/);
  });

  test("runs until Ctrl-C: SIGINT is a clean exit 0", async () => {
    const w = watch(["--json"]);
    await keepDoing(okCall, () => w.child.exitCode !== null || lines(w.out.stdout).length >= 1);
    w.child.kill("SIGINT");
    const r = await w.done;
    assert.equal(r.code, 0, `${r.signal} ${r.stderr}`);
    assert.equal(r.stderr, "");
    assert.ok(lines(r.stdout).length >= 1);
    for (const l of lines(r.stdout)) assert.equal((JSON.parse(l) as TraceEvent).service, "payments");
  });

  test("a reader that went away (| head): stops at its first line, exit 0", async () => {
    const w = spawnCli(["watch", "--service", "payments"], { NATS_URL: server.url }, 15_000, { closeStdout: true });
    await keepDoing(okCall, () => w.child.exitCode !== null);
    const r = await w.done;
    assert.equal(r.code, 0, `${r.signal} ${r.stderr}`);
    assert.equal(r.stderr, "");
  });

  test("colour on a terminal: green ok, red errors, dim trace id", () => {
    const ok = formatTrace(record(), true);
    assert.ok(ok.includes("\x1b[32mok"), ok);
    assert.ok(ok.endsWith("\x1b[2m4bf92f3577b34da6a3ce929d0e0e4736\x1b[0m"), ok);
    assert.ok(formatTrace(record({ status: "UNAVAILABLE" }), true).includes("\x1b[31mUNAVAILABLE"));
    assert.ok(!formatTrace(record(), false).includes("\x1b["));
  });

  test("--help exits 0 and mentions the options", async () => {
    const r = await runCli(["watch", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: svcmesh watch/);
    for (const o of [/--service <name>/, /--endpoint <name>/, /--errors/, /--count <n>/, /--json/, /--server <url>/]) assert.match(r.stdout, o);
  });

  test("bad options are one-line usage errors (exit 2)", async () => {
    for (const args of [["watch", "--service", "pay.*"], ["watch", "--count", "0"], ["watch", "--endpoint", "a b"]]) {
      const r = await runCli(args, { env: { NATS_URL: server.url } });
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, /^svcmesh: option '--\w+ <\w+>' argument '.*' is invalid\./);
    }
    const j = await runCli(["watch", "--json", "--count", "abc"], { env: { NATS_URL: server.url } });
    assert.equal(j.code, 2);
    assert.deepEqual(jsonError(j.stderr), { code: "USAGE", message: "option '--count <n>' argument 'abc' is invalid. expected a positive whole number." });
  });

  test("unreachable NATS: exit 1, one line", async () => {
    const r = await runCli(["watch"], { env: { NATS_URL: "nats://127.0.0.1:1" } });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /);
  });
});
