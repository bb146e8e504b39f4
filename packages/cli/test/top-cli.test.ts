// `svcmesh top` as a child process against a real nats-server: calls are made
// in-process through the library (which publishes their trace records); weighted
// records and breaker events are also published by hand to check the arithmetic.
// Run `pnpm build` first.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { connect, type Mesh } from "svcmesh";
import { encodeBody, encodeTraceBatch, type TraceEvent, traceSubject } from "svcmesh/internal";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { traceRecord } from "../../../test/helpers/trace-record.ts";
import { CLI_MAIN, keepDoing, lines, runCli, spawnCli } from "./run-cli.ts";


interface Snapshot {
  at: number;
  windowMs: number;
  rows: { service: string; endpoint: string; rps: number; p50Ms: number | null; p99Ms: number | null; errorRate: number; breaker: string; calls: number }[];
}

function snapshots(stdout: string): Snapshot[] {
  return lines(stdout).map((l) => JSON.parse(l) as Snapshot);
}

function lastRow(stdout: string, service: string, endpoint: string): Snapshot["rows"][number] | undefined {
  return snapshots(stdout).at(-1)?.rows.find((r) => r.service === service && r.endpoint === endpoint);
}

/** A running `svcmesh top` (killed after 20 s at the latest). */
function top(args: string[]): ReturnType<typeof spawnCli> {
  return spawnCli(["top", ...args], { NATS_URL: server.url }, 20_000);
}

let server: NatsServer;
let host: Mesh;
let claims: Mesh;
let flaky: Mesh;
let nc: NatsConnection;

before(async () => {
  server = await startNatsServer({ jetstream: true }); // JetStream: breaker events are stored in SVC_EVENTS
  host = await connect({ servers: server.url, name: "host", audit: { enabled: false } });
  // claims's breaker stays out of the way of its failing calls; flaky's opens after two failures.
  const trace = { sampleRate: 1, flushMs: 50 };
  claims = await connect({ servers: server.url, name: "claims", audit: { enabled: false }, trace, defaults: { breaker: { enabled: false } } });
  flaky = await connect({ servers: server.url, name: "flaky", audit: { enabled: false }, trace, defaults: { breaker: { failureThreshold: 2, volumeThreshold: 1, resetTimeoutMs: 60_000 } } });
  nc = await natsConnect({ servers: server.url });
  await host.serve({
    name: "payments",
    version: "2.1.0",
    endpoints: {
      reimburse: { handler: () => ({ txn: "T-1" }) },
      explode: {
        handler: () => {
          throw new Error("boom");
        },
      },
    },
  });
});

after(async () => {
  await Promise.allSettled([claims?.close(), flaky?.close(), host?.close(), nc?.drain()]);
  await server?.stop();
});

const calls = async () => {
  await claims.call("payments", "reimburse", {}, { timeoutMs: 2000 });
  await claims.call("payments", "explode", {}, { timeoutMs: 2000, retry: { attempts: 1 } }).catch(() => undefined);
};

const record = traceRecord;

function circuit(type: "circuit_open" | "circuit_half_open" | "circuit_close", service: string, at: number): void {
  nc.publish(`svc.events.${type}.${service}`, encodeBody({ type, service, at, source: "claims", caller: "claims", target: `${service}.v1` }));
}

describe("svcmesh top", () => {
  test("real calls, --json: one snapshot per refresh with rates, latencies, error rates; --count exits 0", async () => {
    const t = top(["--json", "--service", "payments", "--interval", "300", "--count", "30"]);
    // Until the last snapshot has seen both endpoints (the CLI subscribes at a moment we cannot see).
    await keepDoing(calls, () => t.child.exitCode !== null || (lastRow(t.out.stdout, "payments", "explode") !== undefined && lastRow(t.out.stdout, "payments", "reimburse") !== undefined));
    t.child.kill("SIGINT");
    const r = await t.done;
    assert.equal(r.code, 0, `${r.signal} ${r.stderr}`);
    assert.equal(r.stderr, "");
    const snaps = snapshots(r.stdout);
    const last = snaps.at(-1)!;
    assert.ok(Math.abs(last.at - Date.now()) < 10_000);
    assert.ok(last.windowMs > 0 && last.windowMs <= 10_000);
    assert.deepEqual(last.rows.map((row) => [row.service, row.endpoint, row.breaker]), [["payments", "explode", "closed"], ["payments", "reimburse", "closed"]]);
    const [explode, reimburse] = last.rows as [Snapshot["rows"][number], Snapshot["rows"][number]];
    assert.equal(explode.errorRate, 1);
    assert.equal(reimburse.errorRate, 0);
    for (const row of last.rows) {
      assert.ok(row.calls >= 1 && row.rps > 0, JSON.stringify(row));
      assert.ok(row.p50Ms !== null && row.p99Ms !== null && row.p50Ms >= 0 && row.p99Ms >= row.p50Ms, JSON.stringify(row));
    }
  });

  test("human output, not on a terminal: a table per refresh, separated by a blank line", async () => {
    const t = top(["--service", "payments", "--interval", "300", "--count", "3"]);
    await keepDoing(calls, () => t.child.exitCode !== null);
    const r = await t.done;
    assert.equal(r.code, 0, r.stderr);
    const blocks = r.stdout.trimEnd().split("\n\n");
    assert.equal(blocks.length, 3, r.stdout);
    assert.ok(!r.stdout.includes("\x1b["), "no escape codes when not a terminal");
    for (const b of blocks) assert.match(b, /^svcmesh top {2}\d{4}-\d\d-\d\dT\S+Z {2}window \d+(\.\d)?s\n/);
    const table = lines(blocks[2]!).slice(1).map((l) => l.split(/\s{2,}/));
    assert.deepEqual(table[0], ["SERVICE", "ENDPOINT", "REQ/S", "P50", "P99", "ERRORS", "BREAKER", "CALLS"]);
    const explode = table.find((row) => row[1] === "explode");
    assert.ok(explode, r.stdout);
    assert.equal(explode[0], "payments");
    assert.match(explode[3]!, /^\d+\.\d\dm?s$/);
    assert.equal(explode[5], "100.0%");
    assert.equal(explode[6], "closed");
  });

  test("weighting by sampling rate, quantiles, and the breaker state from circuit events", async () => {
    const t = top(["--json", "--interval", "200", "--count", "80"]);
    // The probe tells when top is listening.
    await keepDoing(async () => {
      nc.publish(traceSubject("probe", "ping"), encodeTraceBatch([record({ service: "probe", endpoint: "ping" })]));
      await nc.flush();
    }, () => t.child.exitCode !== null || lastRow(t.out.stdout, "probe", "ping") !== undefined);
    // 10 sampled ok records at rate 0.5 (20 calls) with latencies 1..10 ms, and 5 errors at 100 ms: 25 calls, 20% errors.
    const batch = [
      ...Array.from({ length: 10 }, (_, i) => record({ latencyMs: i + 1, rate: 0.5 })),
      ...Array.from({ length: 5 }, () => record({ status: "TIMEOUT", latencyMs: 100, rate: 0.5 })),
    ];
    nc.publish(traceSubject("ledger", "post"), encodeTraceBatch(batch));
    nc.publish(traceSubject("ledger", "post"), encodeTraceBatch([{ nonsense: true } as unknown as TraceEvent]));
    const now = Date.now();
    circuit("circuit_open", "ledger", now);
    circuit("circuit_close", "ledger", now - 1_000); // older than the open: arrives late, ignored
    await nc.flush();
    const until = (pred: () => boolean) => keepDoing(async () => undefined, () => t.child.exitCode !== null || pred());
    await until(() => lastRow(t.out.stdout, "ledger", "post")?.breaker === "open");
    const row = lastRow(t.out.stdout, "ledger", "post");
    assert.ok(row, t.out.stdout);
    assert.equal(row.calls, 25);
    assert.equal(row.errorRate, 0.2);
    assert.equal(row.p50Ms, 7); // weights: 2 per ok record, 1 per error; 12.5 of 25 reached at 7 ms
    assert.equal(row.p99Ms, 100);
    assert.equal(row.breaker, "open");
    assert.equal(lastRow(t.out.stdout, "probe", "ping")?.breaker, "closed");
    circuit("circuit_half_open", "ledger", now + 1);
    await nc.flush();
    await until(() => lastRow(t.out.stdout, "ledger", "post")?.breaker === "half-open");
    circuit("circuit_close", "ledger", now + 2);
    await nc.flush();
    await until(() => lastRow(t.out.stdout, "ledger", "post")?.breaker === "closed");
    assert.equal(lastRow(t.out.stdout, "ledger", "post")?.breaker, "closed", t.out.stdout.slice(-2000));
    t.child.kill("SIGINT");
    const r = await t.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "svcmesh: skipped 1 malformed trace record\n");
  });

  test("a real breaker opening shows as open for its service, and its refused calls as errors", async () => {
    const t = top(["--json", "--service", "payments", "--interval", "200", "--count", "80"]);
    // Until top shows flaky's ok calls it may not be listening: the breaker must open after that.
    await keepDoing(() => flaky.call("payments", "reimburse", {}, { timeoutMs: 2000 }), () => t.child.exitCode !== null || lastRow(t.out.stdout, "payments", "reimburse") !== undefined);
    const fail = () => flaky.call("payments", "explode", {}, { timeoutMs: 2000, retry: { attempts: 1 } }).catch((e: unknown) => e);
    await keepDoing(fail, () => t.child.exitCode !== null || lastRow(t.out.stdout, "payments", "explode")?.breaker === "open");
    t.child.kill("SIGINT");
    const r = await t.done;
    assert.equal(r.code, 0, r.stderr);
    const row = lastRow(r.stdout, "payments", "explode");
    assert.equal(row?.breaker, "open", r.stdout.slice(-2000));
    assert.equal(row.errorRate, 1);
    assert.equal(lastRow(r.stdout, "payments", "reimburse")?.breaker, "open");

    // A top started after the breaker opened learns its state from the stored events.
    const late = top(["--json", "--interval", "200", "--count", "3"]);
    await keepDoing(fail, () => late.child.exitCode !== null);
    const l = await late.done;
    assert.equal(l.code, 0, l.stderr);
    assert.equal(lastRow(l.stdout, "payments", "explode")?.breaker, "open", l.stdout);
  });

  test("on a terminal it redraws in place (cursor home, clear screen)", async (t) => {
    // `script` gives the command a pseudo-terminal; skip where util-linux's script is missing.
    const probe = spawn("script", ["--version"], { stdio: "ignore" });
    const has = await new Promise<boolean>((resolve) => {
      probe.on("error", () => resolve(false));
      probe.on("close", (code) => resolve(code === 0));
    });
    if (!has) return t.skip("no script(1) here");
    const command = `${process.execPath} ${CLI_MAIN} top --interval 200 --count 2`;
    const child = spawn("script", ["-qec", command, "/dev/null"], {
      env: { ...process.env, SVCMESH_LOG_LEVEL: "silent", NATS_URL: server.url, NO_COLOR: "" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      child.on("close", (c) => {
        clearTimeout(killer);
        resolve(c);
      });
    });
    assert.equal(code, 0, stdout);
    assert.equal(stdout.split("\x1b[H\x1b[2J").length - 1, 2, JSON.stringify(stdout));
  });

  test("a reader that went away (| head): stops at its first snapshot, exit 0", async () => {
    const t = spawnCli(["top", "--json", "--interval", "100"], { NATS_URL: server.url }, 15_000, { closeStdout: true });
    const r = await t.done;
    assert.equal(r.code, 0, `${r.signal} ${r.stderr}`);
    assert.equal(r.stderr, "");
  });

  test("--help exits 0 and mentions the options", async () => {
    const r = await runCli(["top", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: svcmesh top/);
    for (const o of [/--service <name>/, /--interval <ms>/, /--window <ms>/, /--count <n>/, /--json/, /--server <url>/]) assert.match(r.stdout, o);
  });

  test("bad options are one-line usage errors (exit 2)", async () => {
    for (const args of [["top", "--interval", "10"], ["top", "--count", "-1"], ["top", "--service", "a.b"]]) {
      const r = await runCli(args, { env: { NATS_URL: server.url } });
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(lines(r.stderr).length, 1, r.stderr);
    }
  });

  test("unreachable NATS: exit 1, one line", async () => {
    const r = await runCli(["top"], { env: { NATS_URL: "nats://127.0.0.1:1" } });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^svcmesh: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: /);
  });
});
