// `svcmesh events` as a child process against a real nats-server with JetStream;
// events are published in-process with the library. Run `pnpm build` first.
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { EVENTS_STREAM, MeshEvents } from "svcmesh/internal";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { jsonError, runCli } from "./run-cli.ts";

const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, SVCMESH_LOG_LEVEL: "silent", NATS_URL: server.url, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
}

function finished(child: ChildProcessWithoutNullStreams, out: { stdout: string; stderr: string }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, ...out });
    });
  });
}

function capture(child: ChildProcessWithoutNullStreams): { stdout: string; stderr: string } {
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out.stderr += d.toString()));
  return out;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = start(args, env);
  child.stdin.end();
  return finished(child, capture(child));
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.length > 0);
}

/** A silent pino-shaped logger. */
const quiet = (() => {
  const noop = () => undefined;
  const l = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => l };
  return l as unknown as ConstructorParameters<typeof MeshEvents>[1];
})();

async function publish(fn: (e: MeshEvents) => void): Promise<void> {
  const e = new MeshEvents(nc, quiet, "claims", { windowMs: 60_000 });
  fn(e);
  await e.close();
  assert.equal(e.stats().sender.failed, 0);
}

let server: NatsServer;
let noJs: NatsServer;
let nc: NatsConnection;

before(async () => {
  server = await startNatsServer({ jetstream: true });
  noJs = await startNatsServer();
  nc = await natsConnect({ servers: server.url });
});

after(async () => {
  await nc?.drain();
  await Promise.allSettled([server?.stop(), noJs?.stop()]);
});

describe("svcmesh events", () => {
  test("an empty stream (created by the command) says so and succeeds", async () => {
    const r = await cli(["events"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "no events\n");
    const jsm = await nc.jetstreamManager();
    assert.equal((await jsm.streams.info(EVENTS_STREAM)).config.subjects[0], "svc.events.>");
    const j = await cli(["events", "--json"]);
    assert.equal(j.code, 0, j.stderr);
    assert.equal(j.stdout, "");
  });

  test("lists stored events, one line each: time, type, service, key fields, count", async () => {
    await publish((e) => {
      e.emit({ type: "circuit_open", caller: "claims", target: "payments.v2", stats: { failures: 12 } });
      for (let i = 0; i < 250; i++) e.count("timeout", "claims", "payments.v2", "reimburse");
    });
    const r = await cli(["events"]);
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.equal(out.length, 2, r.stdout);
    assert.match(out[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}circuit_open +payments +caller=claims target=payments\.v2$/);
    assert.match(out[1]!, /^\S+Z {2}timeout +payments +caller=claims target=payments\.v2 endpoint=reimburse count=250$/);
  });

  test("--json prints one event object per line", async () => {
    const r = await cli(["--json", "events"]);
    assert.equal(r.code, 0, r.stderr);
    const events = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(events.map((e) => [e.type, e.service, e.source, e.target]), [
      ["circuit_open", "payments", "claims", "payments.v2"],
      ["timeout", "payments", "claims", "payments.v2"],
    ]);
    assert.deepEqual(events[0]!.stats, { failures: 12 });
    assert.equal(events[1]!.count, 250);
    assert.equal(typeof events[1]!.windowStart, "number");
  });

  test("--type, --service and --since filter", async () => {
    await publish((e) => {
      e.emit({ type: "circuit_open", caller: "claims", target: "auth.v1" });
      e.count("no_responders", "claims", "auth.v1", "verify", 3);
    });
    const byType = await cli(["events", "--json", "--type", "circuit_open"]);
    assert.deepEqual(lines(byType.stdout).map((l) => (JSON.parse(l) as { service: string }).service), ["payments", "auth"]);
    const several = await cli(["events", "--json", "--type", "circuit_open,no_responders", "--service", "auth"]);
    assert.deepEqual(lines(several.stdout).map((l) => (JSON.parse(l) as { type: string }).type), ["circuit_open", "no_responders"]);
    const recent = await cli(["events", "--since", "1h", "--service", "auth,payments"]);
    assert.equal(lines(recent.stdout).length, 4, recent.stdout);
    const future = await cli(["events", "--since", new Date(Date.now() + 3_600_000).toISOString()]);
    assert.equal(future.code, 0, future.stderr);
    assert.equal(future.stdout, "no events\n");
  });

  test("--follow prints what is stored, then new events as they come, and exits 0 on SIGINT", async () => {
    const child = start(["events", "--follow", "--type", "circuit_close,circuit_open", "--service", "payments"]);
    child.stdin.end();
    const out = capture(child);
    const done = finished(child, out);
    const until = Date.now() + 10_000;
    const waitFor = async (n: number) => {
      while (lines(out.stdout).length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      assert.equal(lines(out.stdout).length, n, out.stdout + out.stderr);
    };
    await waitFor(1); // the stored circuit_open of payments
    await publish((e) => e.emit({ type: "circuit_close", caller: "claims", target: "payments.v2" }));
    await waitFor(2);
    assert.match(lines(out.stdout)[1]!, /circuit_close +payments +caller=claims target=payments\.v2$/);
    child.kill("SIGINT");
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
  });

  test("a reader that went away (| head): the listing and --follow stop quietly, exit 0", async () => {
    for (const args of [["events"], ["events", "--json"], ["events", "--follow"]]) {
      const r = await runCli(args, { env: { NATS_URL: server.url }, closeStdout: true });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr, "", args.join(" "));
    }
  });

  test("malformed stored messages are skipped with a note on stderr", async () => {
    nc.publish("svc.events.timeout.junk", new Uint8Array([0xc1]));
    await nc.flush();
    const r = await cli(["events", "--service", "junk"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "no events\n");
    assert.match(r.stderr, /^svcmesh: skipping malformed event #\d+ on svc\.events\.timeout\.junk: body is not msgpack/);
  });

  test("bad options are one-line usage errors with exit 2", async () => {
    for (const [args, pattern] of [
      [["events", "--type", "circuit_opened"], /^svcmesh: option '--type <types>' argument 'circuit_opened' is invalid\. unknown event type "circuit_opened"/],
      [["events", "--since", "yesterday"], /^svcmesh: option '--since <when>' argument 'yesterday' is invalid/],
      [["events", "--service", "a.b"], /^svcmesh: option '--service <names>' argument 'a\.b' is invalid/],
    ] as const) {
      const r = await cli([...args]);
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    }
    const j = await cli(["events", "--since", "1h", "--json", "--type", "bogus"]);
    assert.equal(j.code, 2);
    const err = jsonError(j.stderr);
    assert.equal(err.code, "USAGE");
    assert.match(err.message, /^option '--type <types>' argument 'bogus' is invalid\. unknown event type "bogus"/);
  });

  test("a server without JetStream: exit 1 with one line saying so", async () => {
    const r = await cli(["events"], { NATS_URL: noJs.url });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(r.stderr, "svcmesh: UNAVAILABLE: JetStream is not enabled on the NATS server (or for this account): mesh events cannot be stored\n");
  });

  test("--help describes the command", async () => {
    const r = await cli(["events", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: svcmesh events/);
    for (const o of [/--follow/, /--type <types>/, /--service <names>/, /--since <when>/, /--json/, /--server <url>/]) assert.match(r.stdout, o);
  });
});
