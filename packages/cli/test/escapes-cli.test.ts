// Anyone on the mesh may publish trace records, events and audit records, answer
// $SRV.INFO and word a handler's error: the CLI's human output shows control characters
// in such text escaped (\u001b), never as raw bytes a terminal would act on. Each
// printer is run as a process against a real nats-server with JetStream. Run `pnpm build` first.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { connect, type Mesh } from "svcmesh";
import { auditSubject, encodeBody, encodeTraceBatch, ensureAuditStream, ensureEventsStream, traceSubject } from "svcmesh/internal";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { traceRecord } from "../../../test/helpers/trace-record.ts";
import { type CliOptions, keepDoing, lines, runCli, spawnCli } from "./run-cli.ts";

/** ESC starting a colour, a C1 CSI, DEL, a bell and a newline (which would fake a line). */
const EVIL = "x\u001b[31mRED\u009b2J\u007f\u0007\nz";
const SHOWN = "x\\u001b[31mRED\\u009b2J\\u007f\\u0007\\u000az";

/** No C0 (but newlines), DEL or C1 character in a command's output. */
function assertNoControls(text: string): void {
  assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, JSON.stringify(text));
}

const cli = (args: string[], opts: CliOptions = {}) => runCli(args, { ...opts, env: { NATS_URL: server.url, ...opts.env } });

let server: NatsServer;
let host: Mesh;
let nc: NatsConnection;

before(async () => {
  server = await startNatsServer({ jetstream: true });
  nc = await natsConnect({ servers: server.url });
  host = await connect({ servers: server.url, name: "host", audit: { enabled: false } });
  await host.serve({
    name: "evil",
    version: "1.0.0",
    endpoints: {
      boom: {
        description: `pays ${EVIL}`,
        handler: () => {
          throw new Error(`failed ${EVIL}`);
        },
      },
    },
  });
});

after(async () => {
  await Promise.allSettled([host?.close(), nc?.drain()]);
  await server?.stop();
});

describe("untrusted text in human output is escaped", () => {
  test("watch: the caller, service and status of a trace record; --json keeps the value", async () => {
    const evil = traceRecord({ caller: EVIL, status: `E${EVIL}` });
    const publish = async () => {
      nc.publish(traceSubject("ledger", "post"), encodeTraceBatch([evil]));
      await nc.flush();
    };
    const w = spawnCli(["watch", "--count", "1"], { NATS_URL: server.url }, 15_000);
    await keepDoing(publish, () => w.child.exitCode !== null || lines(w.out.stdout).length >= 1);
    const r = await w.done;
    assert.equal(r.code, 0, r.stderr);
    assertNoControls(r.stdout);
    assert.ok(r.stdout.includes(`${SHOWN} → ledger.post  E${SHOWN}`), r.stdout);

    const j = spawnCli(["watch", "--json", "--count", "1"], { NATS_URL: server.url }, 15_000);
    await keepDoing(publish, () => j.child.exitCode !== null || lines(j.out.stdout).length >= 1);
    const jr = await j.done;
    assert.equal(jr.code, 0, jr.stderr);
    assertNoControls(jr.stdout);
    assert.equal((JSON.parse(lines(jr.stdout)[0]!) as { caller: string }).caller, EVIL);
  });

  test("top: the service and endpoint a trace record names", async () => {
    const t = spawnCli(["top", "--interval", "100", "--count", "100"], { NATS_URL: server.url }, 15_000);
    await keepDoing(async () => {
      nc.publish(traceSubject("ledger", "post"), encodeTraceBatch([traceRecord({ service: EVIL, endpoint: `e${EVIL}` })]));
      await nc.flush();
    }, () => t.child.exitCode !== null || t.out.stdout.includes(SHOWN));
    t.child.kill("SIGINT");
    const r = await t.done;
    assert.equal(r.code, 0, r.stderr);
    assertNoControls(r.stdout);
    assert.ok(r.stdout.includes(`${SHOWN}  e${SHOWN}`), r.stdout);
  });

  test("events: the fields of a stored event", async () => {
    await ensureEventsStream(nc);
    await nc.jetstream().publish("svc.events.circuit_open.evil", encodeBody({ type: "circuit_open", service: "evil", at: Date.now(), source: EVIL, caller: EVIL, target: "evil.v1" }));
    const r = await cli(["events", "--service", "evil"]);
    assert.equal(r.code, 0, r.stderr);
    assertNoControls(r.stdout);
    assert.ok(r.stdout.includes(`caller=${SHOWN} target=evil.v1\n`), r.stdout);
  });

  test("audit: the caller and status of a stored record", async () => {
    await ensureAuditStream(nc);
    const record = { time: Date.now(), service: "evil", version: "1.0.0", instance: "I1", endpoint: "boom", caller: EVIL, requestId: "R1", traceId: "", status: `E${EVIL}`, durationMs: 1 };
    await nc.jetstream().publish(auditSubject("evil"), encodeBody(record));
    const r = await cli(["audit", "--service", "evil"]);
    assert.equal(r.code, 0, r.stderr);
    assertNoControls(r.stdout);
    const row = lines(r.stdout)[1]!.split(/\s{2,}/);
    assert.deepEqual(row.slice(1, 4), [SHOWN, "evil.boom", `E${SHOWN}`]);
  });

  test("info: an endpoint's description from $SRV.INFO", async () => {
    const r = await cli(["info", "evil", "--wait", "500"]);
    assert.equal(r.code, 0, r.stderr);
    assertNoControls(r.stdout);
    assert.ok(lines(r.stdout).includes(`    description: pays ${SHOWN}`), r.stdout);
  });

  test("call: a remote handler's error message on stderr, as text and as JSON", async () => {
    const r = await cli(["call", "evil", "boom", "{}"]);
    assert.equal(r.code, 1);
    assertNoControls(r.stderr);
    assert.ok(r.stderr.startsWith("svcmesh: HANDLER_ERROR: failed x\\u001b[31mRED\\u009b2J\\u007f\\u0007"), r.stderr);
    const j = await cli(["call", "evil", "boom", "{}", "--json"]);
    assert.equal(j.code, 1);
    assertNoControls(j.stderr);
    assert.ok((JSON.parse(j.stderr) as { error: { message: string } }).error.message.startsWith("failed x\u001b[31mRED\u009b2J\u007f\u0007"), j.stderr);
  });
});
