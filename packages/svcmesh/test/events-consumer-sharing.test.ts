// Processes sharing a durable events consumer: each acks away what it pulls and does not
// want, so they must ask for the same types and services. consume() refuses to change
// what a durable is made for while others pull from it, and a process whose durable was
// changed under it hands other processes' events back instead of acking them away.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AckPolicy, connect as natsConnect, type NatsConnection } from "nats";
import { isMeshError } from "svcmesh";
import { EVENTS_STREAM, MeshEvents } from "svcmesh/internal";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { recordingLogger, waitFor } from "../../../test/helpers/wait.ts";

type Logger = ConstructorParameters<typeof MeshEvents>[1];
const recording = (into: string[]) => recordingLogger<Logger>(into);


let server: NatsServer;
const conns: NatsConnection[] = [];
const opened: MeshEvents[] = [];

/** A process of its own: its own connection and events. */
async function aProcess(source: string, logged: string[] = []): Promise<MeshEvents> {
  const nc = await natsConnect({ servers: server.url });
  conns.push(nc);
  const e = new MeshEvents(nc, recording(logged), source);
  opened.push(e);
  return e;
}

async function info(durable: string) {
  return (await conns[0]!.jetstreamManager()).consumers.info(EVENTS_STREAM, durable);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => assert.fail("consume() should have been refused"), (e: unknown) => e);
}

before(async () => {
  server = await startNatsServer({ jetstream: true });
  conns.push(await natsConnect({ servers: server.url }));
});

after(async () => {
  await Promise.allSettled(opened.map((e) => e.close()));
  await Promise.allSettled(conns.map((c) => c.drain()));
  await server?.stop();
});

test("the durable records what it was made for; while it is pulled from, consume() for other types or services is BAD_REQUEST", async () => {
  const old = await aProcess("wf-old");
  const handled: string[] = [];
  const cOld = await old.consume({ durable: "ops", types: ["circuit_open"] }, (e) => void handled.push(`${e.type}/${e.service}`));
  assert.equal((await info("ops")).config.description, "svcmesh events types=circuit_open services=*");
  await waitFor("the old process pulling", async () => (await info("ops")).num_waiting > 0);

  const neu = await aProcess("wf-new");
  // Wider types (a rolling upgrade adding one), and the reverse: narrower ones.
  for (const types of [["circuit_open", "circuit_close"], ["circuit_close"]] as const) {
    const e = await rejection(neu.consume({ durable: "ops", types }, () => undefined));
    assert.ok(isMeshError(e) && e.code === "BAD_REQUEST", String(e));
    assert.match(e.message, /made for types=circuit_open services=\*/);
    assert.match(e.message, /must ask for the same types and services/);
    assert.match(e.message, /use another durable name, or stop the others first/);
  }
  const e = await rejection(neu.consume({ durable: "ops", types: ["circuit_open"], services: ["pay"] }, () => undefined));
  assert.ok(isMeshError(e) && e.code === "BAD_REQUEST" && /asks for types=circuit_open services=pay/.test(e.message), String(e));
  // The durable was left as the old process made it.
  const kept = await info("ops");
  assert.deepEqual([kept.config.filter_subject, kept.config.description], ["svc.events.circuit_open.*", "svcmesh events types=circuit_open services=*"]);

  // The same types and services (in another order, repeated): shares the work.
  const shared: string[] = [];
  const cShared = await neu.consume({ durable: "ops", types: ["circuit_open", "circuit_open"] }, (ev) => void shared.push(ev.type));
  const pub = await aProcess("claims");
  for (let i = 0; i < 10; i++) {
    pub.emit({ type: "circuit_open", caller: "claims", target: `share-${i}.v1` });
    pub.emit({ type: "circuit_close", caller: "claims", target: `share-${i}.v1` });
  }
  await pub.close();
  await waitFor("every circuit_open handled", () => handled.length + shared.length >= 10);
  await Promise.all([cOld.stop(), cShared.stop()]);
  assert.equal(handled.length + shared.length, 10);

  // Nobody pulls any more: updating what the durable is made for is fine, as before.
  const cNew = await neu.consume({ durable: "ops", types: ["circuit_open", "circuit_close"] }, () => undefined);
  const updated = await info("ops");
  assert.deepEqual([updated.config.filter_subject, updated.config.description], ["svc.events.>", "svcmesh events types=circuit_close,circuit_open services=*"]);
  await cNew.stop();
});

test("a durable made by an older svcmesh (no types recorded) is refused only for another filter while pulled from", async () => {
  const jsm = await conns[0]!.jetstreamManager();
  await jsm.consumers.add(EVENTS_STREAM, { durable_name: "legacy", description: "svcmesh events workflow consumer", ack_policy: AckPolicy.Explicit, filter_subject: "svc.events.timeout.*" });
  // Another process pulling from it (an older svcmesh's).
  const olderNc = await natsConnect({ servers: server.url });
  conns.push(olderNc);
  const older = await olderNc.jetstream().consumers.get(EVENTS_STREAM, "legacy");
  const pulling = await older.fetch({ max_messages: 5, expires: 20_000 });
  const drained = (async () => {
    for await (const _m of pulling) {
      // none expected
    }
  })();
  await waitFor("the older process pulling", async () => (await info("legacy")).num_waiting > 0);
  const wf = await aProcess("wf");
  const e = await rejection(wf.consume({ durable: "legacy", types: ["circuit_open"] }, () => undefined));
  assert.ok(isMeshError(e) && e.code === "BAD_REQUEST" && /made for the filter svc\.events\.timeout\.\*/.test(e.message), String(e));
  const same = await wf.consume({ durable: "legacy", types: ["timeout"] }, () => undefined);
  assert.equal((await info("legacy")).config.description, "svcmesh events types=timeout services=*");
  await same.stop();
  pulling.stop();
  await drained;
});

test("a process whose durable was changed under it for other types hands those events back instead of acking them away", async () => {
  const logged: string[] = [];
  const old = await aProcess("wf-old", logged);
  const oldGot: string[] = [];
  // One type and every service: a wildcard filter (nats-server 2.9.10 delivers nothing
  // after a literal filter is updated to a wildcard one).
  const cOld = await old.consume({ durable: "guard", types: ["circuit_open"], deliver: "new", retryDelayMs: 100 }, (e) => void oldGot.push(`${e.type}/${e.service}`));
  await waitFor("the old process pulling", async () => (await info("guard")).num_waiting > 0);
  // What a process that saw no pull waiting (the old one had a full batch in hand) did.
  const jsm = await conns[0]!.jetstreamManager();
  await jsm.consumers.update(EVENTS_STREAM, "guard", { filter_subject: "svc.events.>", description: "svcmesh events types=circuit_close,circuit_open services=*" });
  const closeSeq = (await jsm.streams.info(EVENTS_STREAM)).state.last_seq + 1;
  const pub = await aProcess("claims");
  pub.emit({ type: "circuit_close", caller: "claims", target: "guard.v1" });
  pub.emit({ type: "circuit_open", caller: "claims", target: "guard.v1" });
  await pub.close();
  await waitFor("the old process's circuit_open", () => oldGot.length >= 1);
  await waitFor("the circuit_close handed back", () => logged.some((m) => /another process changed this durable/.test(m)), 3_000).catch(() => undefined);
  await cOld.stop();
  assert.deepEqual(oldGot, ["circuit_open/guard"]);
  // The circuit_close is still owed to the durable (not acked away): the process made
  // for it gets it. (That redelivery is not checked here: after a live filter change,
  // nats-server 2.9.10 sometimes redelivers the wrong stream message.)
  const after = await info("guard");
  assert.ok(after.ack_floor.stream_seq < closeSeq, `ack floor ${after.ack_floor.stream_seq}, circuit_close at ${closeSeq}`);
  assert.equal(after.num_ack_pending, 1);
  assert.ok(logged.some((m) => /another process changed this durable/.test(m)), "the old process warned");
});

test("a durable made for one type and one service, asked later for more, still gets the new events (nats-server 2.9 delivers nothing after such a filter update: it is made anew)", async () => {
  const first = await aProcess("narrow");
  const seen: string[] = [];
  const narrow = await first.consume({ durable: "widened", types: ["circuit_open"], services: ["pay"] }, (e) => void seen.push(`${e.type} ${e.service}`));
  assert.equal((await info("widened")).config.filter_subject, "svc.events.circuit_open.pay");
  first.emit({ type: "circuit_open", caller: "c", target: "pay.v1" });
  await waitFor("the first event", () => seen.length === 1);
  await narrow.stop();
  const second = await aProcess("wide");
  const wide = await second.consume({ durable: "widened", types: ["circuit_open", "circuit_close"], services: ["pay"] }, (e) => void seen.push(`${e.type} ${e.service}`));
  second.emit({ type: "circuit_close", caller: "c", target: "pay.v1" });
  second.emit({ type: "circuit_open", caller: "c", target: "pay.v1" });
  await waitFor("both new events", () => seen.length >= 3);
  await sleep(200);
  assert.deepEqual(seen, ["circuit_open pay", "circuit_close pay", "circuit_open pay"], "each once, the first not again");
  await wide.stop();
});
