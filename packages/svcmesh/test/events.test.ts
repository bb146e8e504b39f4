// Durable mesh events against a real nats-server with JetStream: publishing with
// valid schemas, coalescing, the SVC_EVENTS stream, and durable workflow consumers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { encode } from "@msgpack/msgpack";
import { isMeshError } from "svcmesh";
import {
  CircuitOpenEvent,
  decodeBody,
  ensureEventsStream,
  EVENTS_STREAM,
  type EventDelivery,
  InstanceStartedEvent,
  type MeshEvent,
  MeshEvents,
  RetryExhaustedEvent,
  TimeoutEvent,
} from "svcmesh/internal";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { waitFor } from "../../../test/helpers/wait.ts";

type Logged = { level: string; obj: unknown; msg: string };

/** A pino-shaped logger that remembers what it was told. */
function recordingLogger(into: Logged[] = []): ConstructorParameters<typeof MeshEvents>[1] & { logged: Logged[] } {
  const log = (level: string) => (obj: unknown, msg?: string) => void into.push({ level, obj, msg: msg ?? String(obj) });
  const logger = { logged: into, trace: log("trace"), debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error"), fatal: log("fatal"), child: () => logger };
  return logger as unknown as ConstructorParameters<typeof MeshEvents>[1] & { logged: Logged[] };
}


/** Collects what is published on `subject` (core NATS, no stream involved). */
function collect(nc: NatsConnection, subject: string): { events: { subject: string; event: MeshEvent }[]; stop(): void } {
  const events: { subject: string; event: MeshEvent }[] = [];
  const sub = nc.subscribe(subject, { callback: (_e, m) => events.push({ subject: m.subject, event: decodeBody(m.data) as MeshEvent }) });
  return { events, stop: () => sub.unsubscribe() };
}

let server: NatsServer;
let noJs: NatsServer;
let nc: NatsConnection;
const opened: MeshEvents[] = [];

function events(source: string, options?: ConstructorParameters<typeof MeshEvents>[3]): MeshEvents & { log: Logged[] } {
  const logger = recordingLogger();
  const e = Object.assign(new MeshEvents(nc, logger, source, options), { log: logger.logged });
  opened.push(e);
  return e;
}

async function streamMessages(): Promise<number> {
  const jsm = await nc.jetstreamManager();
  return (await jsm.streams.info(EVENTS_STREAM)).state.messages;
}

async function consumerState(durable: string): Promise<{ pending: number; ackPending: number; redelivered: number }> {
  const jsm = await nc.jetstreamManager();
  const i = await jsm.consumers.info(EVENTS_STREAM, durable);
  return { pending: i.num_pending, ackPending: i.num_ack_pending, redelivered: i.num_redelivered };
}

before(async () => {
  server = await startNatsServer({ jetstream: true });
  noJs = await startNatsServer();
  nc = await natsConnect({ servers: server.url });
});

after(async () => {
  await Promise.allSettled(opened.map((e) => e.close()));
  await nc?.drain();
  await Promise.allSettled([server?.stop(), noJs?.stop()]);
});

describe("publishing", () => {
  test("the first event creates the stream lazily, and it is stored", async () => {
    const jsm = await nc.jetstreamManager();
    await assert.rejects(jsm.streams.info(EVENTS_STREAM), /stream not found/);
    const ev = events("claims");
    ev.emit({ type: "circuit_open", caller: "claims", target: "first.v2" });
    await ev.close();
    const info = await jsm.streams.info(EVENTS_STREAM);
    assert.deepEqual(info.config.subjects, ["svc.events.>"]);
    assert.equal(info.config.storage, "file");
    assert.equal(info.config.max_age, 7 * 24 * 3600 * 1e9);
    assert.equal(info.state.messages, 1);
    assert.equal(ev.stats().sender.stored, 1);
  });

  test("emit publishes svc.events.<type>.<service> bodies that pass their schema", async () => {
    const seen = collect(nc, "svc.events.*.emit-pay");
    const ev = events("claims");
    const before = Date.now();
    ev.emit({ type: "circuit_open", caller: "claims", target: "emit-pay.v2", stats: { fires: 20, failures: 15 } });
    ev.emit({ type: "instance_started", service: "emit-pay", id: "abc", version: "2.1.0", endpoints: ["reimburse"] });
    await waitFor("two events", () => seen.events.length === 2);
    seen.stop();
    const [open, started] = seen.events;
    assert.equal(open!.subject, "svc.events.circuit_open.emit-pay");
    const o = CircuitOpenEvent.parse(open!.event);
    assert.deepEqual({ ...o, at: 0 }, { type: "circuit_open", service: "emit-pay", at: 0, source: "claims", caller: "claims", target: "emit-pay.v2", stats: { fires: 20, failures: 15 } });
    assert.ok(o.at >= before && o.at <= Date.now());
    assert.equal(started!.subject, "svc.events.instance_started.emit-pay");
    assert.equal(InstanceStartedEvent.parse(started!.event).id, "abc");
  });

  test("an invalid event is logged and not published; emit never throws", async () => {
    const seen = collect(nc, "svc.events.>");
    const ev = events("claims");
    // @ts-expect-error: target is required
    ev.emit({ type: "circuit_close", caller: "claims" });
    // @ts-expect-error: not an emitted type
    ev.emit({ type: "made_up", service: "x" });
    await nc.flush();
    await sleep(50);
    seen.stop();
    assert.equal(seen.events.length, 0);
    assert.equal(ev.stats().rejected, 2);
    assert.equal(ev.log.filter((l) => l.level === "error").length, 2);
  });

  test("5,000 counted timeouts become a few events whose counts sum to 5,000", async () => {
    const seen = collect(nc, "svc.events.timeout.storm");
    const ev = events("claims", { windowMs: 200 });
    const started = Date.now();
    for (let i = 0; i < 5_000; i++) ev.count("timeout", "claims", "storm.v2", "reimburse");
    const loopMs = Date.now() - started;
    assert.equal(ev.stats().windows, 1);
    await waitFor("the counts", () => seen.events.reduce((n, e) => n + (e.event as { count: number }).count, 0) >= 5_000);
    seen.stop();
    assert.ok(seen.events.length <= 1 + Math.ceil(loopMs / 200), `${seen.events.length} events`);
    for (const { event } of seen.events) {
      const t = TimeoutEvent.parse(event);
      assert.deepEqual([t.service, t.source, t.caller, t.target, t.endpoint], ["storm", "claims", "claims", "storm.v2", "reimburse"]);
      assert.ok(t.windowStart <= t.windowEnd);
    }
    assert.equal(seen.events.reduce((n, e) => n + (e.event as { count: number }).count, 0), 5_000);
  });

  test("one event per key and window; retry_exhausted carries attempts and the last code", async () => {
    const seen = collect(nc, "svc.events.*.keys");
    const ev = events("claims", { windowMs: 10_000 });
    for (let i = 0; i < 3; i++) {
      ev.count("timeout", "claims", "keys.v1", "a");
      ev.count("timeout", "claims", "keys.v1", "b");
      ev.count("no_responders", "claims", "keys.v1", "a");
      ev.retryExhausted("claims", "keys.v1", "a", 3, i === 2 ? "UNAVAILABLE" : "TIMEOUT");
    }
    ev.count("rate_limited", "claims", "keys.v1", "a", 7);
    ev.flush();
    await waitFor("five events", () => seen.events.length === 5);
    const byKey = new Map(seen.events.map(({ event: e }) => [`${e.type}/${(e as { endpoint: string }).endpoint}`, e]));
    assert.equal((byKey.get("timeout/a") as { count: number }).count, 3);
    assert.equal((byKey.get("timeout/b") as { count: number }).count, 3);
    assert.equal((byKey.get("no_responders/a") as { count: number }).count, 3);
    assert.equal((byKey.get("rate_limited/a") as { count: number }).count, 7);
    const r = RetryExhaustedEvent.parse(byKey.get("retry_exhausted/a"));
    assert.deepEqual([r.count, r.attempts, r.lastCode], [3, 3, "UNAVAILABLE"]);
    // Nothing counted since: the next flush publishes nothing.
    ev.flush();
    await nc.flush();
    await sleep(50);
    seen.stop();
    assert.equal(seen.events.length, 5);
  });

  test("a bounded number of windows: counts for more keys are dropped and counted, not kept", async () => {
    const ev = events("claims", { windowMs: 10_000, maxWindows: 2 });
    for (let i = 0; i < 100; i++) ev.count("timeout", "claims", `over-${i}.v1`, "x");
    assert.deepEqual([ev.stats().windows, ev.stats().overflow], [2, 98]);
    ev.flush();
    assert.ok(ev.log.some((l) => l.level === "warn" && /too many distinct/.test(l.msg)));
    await ev.close();
    assert.equal(ev.stats().windows, 0);
  });

  test("close() publishes pending windows; later counts and emits are ignored", async () => {
    const seen = collect(nc, "svc.events.*.closing");
    const ev = events("claims", { windowMs: 60_000 });
    ev.count("bulkhead_full", "claims", "closing", "slow", 4);
    await ev.close();
    ev.count("bulkhead_full", "claims", "closing", "slow");
    ev.emit({ type: "circuit_open", caller: "claims", target: "closing.v1" });
    await nc.flush();
    await waitFor("the flushed window", () => seen.events.length >= 1);
    await sleep(50);
    seen.stop();
    assert.deepEqual(seen.events.map((e) => [e.event.type, (e.event as { count: number }).count]), [["bulkhead_full", 4]]);
  });

  test("without JetStream, events still go out as plain messages and nothing throws", async () => {
    const plain = await natsConnect({ servers: noJs.url });
    try {
      const got: string[] = [];
      const sub = plain.subscribe("svc.events.>", { callback: (_e, m) => got.push(m.subject) });
      const logger = recordingLogger();
      const ev = new MeshEvents(plain, logger, "claims");
      ev.emit({ type: "circuit_open", caller: "claims", target: "nojs.v1" });
      ev.count("timeout", "claims", "nojs.v1", "x");
      await ev.close();
      await plain.flush();
      await waitFor("two plain events", () => got.length === 2);
      sub.unsubscribe();
      assert.equal(ev.stats().sender.plain, 2);
      // Said once, with its reason and without a stack trace: a server without JetStream is a setup, not a fault.
      const said = logger.logged.filter((l) => /not stored durably/.test(l.msg));
      assert.equal(said.length, 1, JSON.stringify(said));
      assert.equal(said[0]!.level, "warn");
      assert.match(said[0]!.msg, /no JetStream/);
      assert.deepEqual(Object.keys(said[0]!.obj as object), ["reason"]);
      assert.match((said[0]!.obj as { reason: string }).reason, /JetStream is not enabled/);
      const e = await new MeshEvents(plain, logger, "wf").consume({ durable: "nojs" }, () => undefined).then(() => undefined, (x: unknown) => x);
      assert.ok(isMeshError(e) && e.code === "UNAVAILABLE" && /JetStream is not enabled/.test(e.message), String(e));
    } finally {
      await plain.close();
    }
  });
});

describe("the SVC_EVENTS stream", () => {
  test("ensureEventsStream twice and concurrently is fine and returns the stream", async () => {
    const infos = await Promise.all(Array.from({ length: 5 }, () => ensureEventsStream(nc)));
    for (const i of infos) assert.equal(i.config.name, EVENTS_STREAM);
    const again = await ensureEventsStream(nc);
    assert.equal(again.config.max_age, infos[0]!.config.max_age);
  });

  test("named options update an existing stream; ensuring without options leaves it alone", async () => {
    const hour = 3_600_000;
    const updated = await Promise.all([ensureEventsStream(nc, { maxAgeMs: 48 * hour }), ensureEventsStream(nc, { maxAgeMs: 48 * hour })]);
    assert.equal(updated[0]!.config.max_age, 48 * hour * 1e6);
    assert.equal((await ensureEventsStream(nc)).config.max_age, 48 * hour * 1e6);
    const back = await ensureEventsStream(nc, { maxAgeMs: 7 * 24 * hour, duplicateWindowMs: 60_000 });
    assert.equal(back.config.duplicate_window, 60_000 * 1e6);
  });

  test("without JetStream: MeshError UNAVAILABLE saying so; bad options: BAD_REQUEST", async () => {
    const plain = await natsConnect({ servers: noJs.url });
    try {
      const e = await ensureEventsStream(plain).then(() => undefined, (x: unknown) => x);
      assert.ok(isMeshError(e) && e.code === "UNAVAILABLE", String(e));
      assert.match(e.message, /JetStream is not enabled/);
    } finally {
      await plain.close();
    }
    const bad = await ensureEventsStream(nc, { replicas: 0 }).then(() => undefined, (x: unknown) => x);
    assert.ok(isMeshError(bad) && bad.code === "BAD_REQUEST", String(bad));
  });
});

describe("durable consumers", () => {
  test("a workflow started after the event still gets it, exactly once after acknowledging it", async () => {
    const pub = events("claims");
    pub.emit({ type: "circuit_open", caller: "claims", target: "late-pay.v2", stats: { failures: 12 } });
    await pub.close();
    const wf = events("workflow");
    const got: { event: MeshEvent; d: EventDelivery }[] = [];
    const opts = { durable: "wf-late", types: ["circuit_open"] as const, services: ["late-pay"] };
    const c1 = await wf.consume(opts, (event, d) => void got.push({ event, d }));
    await waitFor("the circuit_open event", () => got.length === 1);
    const first = got[0]!;
    assert.equal(first.event.type, "circuit_open");
    assert.equal(first.event.target, "late-pay.v2");
    assert.equal(first.d.deliveryCount, 1);
    await c1.stop();
    assert.deepEqual(await consumerState("wf-late"), { pending: 0, ackPending: 0, redelivered: 0 });

    // Restarted under the same name: nothing comes again, and it resumes with new events.
    const c2 = await wf.consume(opts, (event, d) => void got.push({ event, d }));
    const pub2 = events("claims");
    pub2.emit({ type: "circuit_open", caller: "claims", target: "late-pay.v3" });
    pub2.emit({ type: "circuit_close", caller: "claims", target: "late-pay.v2" }); // another type: not for this workflow
    await pub2.close();
    await waitFor("the second circuit_open", () => got.length >= 2);
    await sleep(200);
    await c2.stop();
    assert.deepEqual(got.map((g) => [g.event.type, (g.event as { target: string }).target, g.d.deliveryCount]), [
      ["circuit_open", "late-pay.v2", 1],
      ["circuit_open", "late-pay.v3", 1],
    ]);
    assert.notEqual(got[0]!.d.streamSeq, got[1]!.d.streamSeq);
    assert.deepEqual(await consumerState("wf-late"), { pending: 0, ackPending: 0, redelivered: 0 });
  });

  test("a handler that throws gets the event again, then it is acknowledged", async () => {
    const pub = events("claims");
    pub.emit({ type: "circuit_half_open", caller: "claims", target: "flaky-wf.v1" });
    await pub.close();
    const wf = events("workflow");
    const deliveries: EventDelivery[] = [];
    const c = await wf.consume({ durable: "wf-throws", services: ["flaky-wf"], retryDelayMs: 100 }, (_e, d) => {
      deliveries.push(d);
      if (d.deliveryCount < 3) throw new Error(`not yet (${d.deliveryCount})`);
    });
    await waitFor("three deliveries", () => deliveries.length >= 3);
    await sleep(150);
    await c.stop();
    assert.deepEqual(deliveries.map((d) => d.deliveryCount), [1, 2, 3]);
    assert.equal(new Set(deliveries.map((d) => d.streamSeq)).size, 1);
    assert.equal((await consumerState("wf-throws")).ackPending, 0);
    assert.equal(wf.log.filter((l) => l.level === "warn" && /handler failed/.test(l.msg)).length, 2);
  });

  test("malformed messages are terminated and logged, and do not block the events behind them", async () => {
    await ensureEventsStream(nc);
    nc.publish("svc.events.timeout.broken", new Uint8Array([0xc1, 0xc1])); // not msgpack
    nc.publish("svc.events.timeout.broken", encode({ caller: "x", count: "many" })); // schema-invalid
    nc.publish("svc.events.timeout.broken", encode({ type: "circuit_open", caller: "x", target: "broken" })); // type ≠ subject
    const pub = events("claims", { windowMs: 60_000 });
    pub.count("timeout", "claims", "broken.v1", "ep", 9);
    await pub.close();
    const wf = events("workflow");
    const got: MeshEvent[] = [];
    const c = await wf.consume({ durable: "wf-malformed", types: ["timeout"], services: ["broken"] }, (e) => void got.push(e));
    await waitFor("the valid event", () => got.length === 1);
    await c.stop();
    assert.equal((got[0] as { count: number }).count, 9);
    assert.equal(wf.log.filter((l) => l.level === "warn" && /malformed/.test(l.msg)).length, 3);
    assert.deepEqual(await consumerState("wf-malformed"), { pending: 0, ackPending: 0, redelivered: 0 });
  });

  test("instance announcements as instances publish them are valid events", async () => {
    await ensureEventsStream(nc);
    nc.publish("svc.events.instance_started.annc", encode({ service: "annc", id: "i-1", version: "1.2.3", endpoints: ["a", "b"] }));
    await nc.flush();
    const wf = events("workflow");
    const got: MeshEvent[] = [];
    const c = await wf.consume({ durable: "wf-annc", types: ["instance_started", "instance_stopped"], services: ["annc"] }, (e) => void got.push(e));
    await waitFor("the announcement", () => got.length === 1);
    await c.stop();
    const e = InstanceStartedEvent.parse(got[0]);
    assert.deepEqual([e.service, e.id, e.source, e.version, e.endpoints], ["annc", "i-1", "i-1", "1.2.3", ["a", "b"]]);
    assert.ok(e.at > Date.now() - 60_000);
  });

  test("several types and services: one wildcard filter, the others skipped", async () => {
    const pub = events("claims");
    for (const s of ["multi-a", "multi-b", "multi-c"]) {
      pub.emit({ type: "circuit_open", caller: "claims", target: `${s}.v1` });
      pub.emit({ type: "circuit_half_open", caller: "claims", target: `${s}.v1` });
      pub.emit({ type: "circuit_close", caller: "claims", target: `${s}.v1` });
    }
    await pub.close();
    const wf = events("workflow");
    const got: string[] = [];
    const c = await wf.consume(
      { durable: "wf-multi", types: ["circuit_open", "circuit_close"], services: ["multi-a", "multi-c"] },
      (e) => void got.push(`${e.type}/${e.service}`),
    );
    await waitFor("four events", () => got.length >= 4);
    await waitFor("every other event skipped", async () => (await consumerState("wf-multi")).pending === 0);
    await c.stop();
    assert.deepEqual(got, ["circuit_open/multi-a", "circuit_close/multi-a", "circuit_open/multi-c", "circuit_close/multi-c"]);
  });

  test('deliver "new" skips what was stored before the durable existed', async () => {
    const pub = events("claims");
    pub.emit({ type: "circuit_open", caller: "claims", target: "fresh.v1" });
    await pub.close();
    const wf = events("workflow");
    const got: string[] = [];
    const c = await wf.consume({ durable: "wf-new", services: ["fresh"], deliver: "new" }, (e) => void got.push(e.type));
    const pub2 = events("claims");
    pub2.emit({ type: "circuit_close", caller: "claims", target: "fresh.v1" });
    await pub2.close();
    await waitFor("the new event", () => got.length >= 1);
    await sleep(100);
    await c.stop();
    assert.deepEqual(got, ["circuit_close"]);
  });

  test("stop() lets the handler in progress finish and acknowledges its event", async () => {
    const pub = events("claims");
    pub.emit({ type: "circuit_open", caller: "claims", target: "slow-wf.v1" });
    pub.emit({ type: "circuit_close", caller: "claims", target: "slow-wf.v1" });
    await pub.close();
    const wf = events("workflow");
    const done: string[] = [];
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => (entered = r));
    const c = await wf.consume({ durable: "wf-slow", services: ["slow-wf"] }, async (e) => {
      entered();
      await sleep(300);
      done.push(e.type);
    });
    await inHandler;
    await c.stop();
    assert.deepEqual(done, ["circuit_open"]);
    // The first was acknowledged; the second (pulled, never handled) was handed back at
    // once (nak), not left to its ack wait (30 s): the next consumer gets it within 5 s.
    const again: number[] = [];
    const c2 = await wf.consume({ durable: "wf-slow", services: ["slow-wf"] }, (e, d) => {
      done.push(e.type);
      again.push(d.deliveryCount);
    });
    await waitFor("the second event", () => done.length === 2);
    await c2.stop();
    assert.deepEqual(done, ["circuit_open", "circuit_close"]);
    assert.equal(again.length, 1);
  });

  test("stop() right after consume() resolves returns promptly, and close() stops what is left", async () => {
    const wf = events("workflow");
    for (let i = 0; i < 5; i++) {
      const c = await wf.consume({ durable: "wf-quick", services: ["quick"] }, () => undefined);
      const started = Date.now();
      await c.stop();
      assert.ok(Date.now() - started < 1_000, `stop took ${Date.now() - started} ms`);
    }
    await wf.consume({ durable: "wf-quick", services: ["quick"] }, () => undefined);
    assert.equal(wf.stats().consumers, 1);
    await wf.close();
    assert.equal(wf.stats().consumers, 0);
  });

  test("bad consume options are BAD_REQUEST", async () => {
    const wf = events("workflow");
    for (const o of [{ durable: "has.dot" }, { durable: "ok", types: ["nope"] }, { durable: "ok", deliver: "later" }]) {
      const e = await wf.consume(o as never, () => undefined).then(() => undefined, (x: unknown) => x);
      assert.ok(isMeshError(e) && e.code === "BAD_REQUEST", `${JSON.stringify(o)}: ${String(e)}`);
    }
    assert.ok((await streamMessages()) > 0);
  });
});
