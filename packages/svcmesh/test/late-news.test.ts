// What arrives late must not undo what is known: a discovery answer collected before an
// instance announced its stop, an announcement re-sent while JetStream does not
// acknowledge it, and events re-sent to live subscribers after JetStream went away.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import pino from "pino";
import { connect, type Mesh } from "svcmesh";
import { encodeBody } from "svcmesh/internal";
import { Registry } from "../src/registry.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

const logger = pino({ level: "silent" });

describe("discovery", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let host: Mesh;
  before(async () => {
    server = await startNatsServer();
    nc = await natsConnect({ servers: server.url });
    host = await connect({ servers: server.url, name: "late-host", logLevel: "silent", audit: { enabled: false }, trace: false });
  });
  after(async () => {
    await host.close();
    await nc.close();
    await server.stop();
  });

  const announce = async (type: "instance_started" | "instance_stopped", service: string, id: string) => {
    nc.publish(`svc.events.${type}.${service}`, encodeBody({ service, id, version: "1.0.0", endpoints: ["ping"] }));
    await nc.flush();
  };

  test("a stop announced while a discovery query is still collecting answers is not undone by its result", async () => {
    const svc = await host.serve({ name: "late-query", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    // A long jitter: the query keeps collecting answers for 400 ms after the first.
    const registry = new Registry(nc, { ttlMs: 10_000, jitterMs: 400, maxWaitMs: 2_000 }, logger);
    registry.start();
    await nc.flush();
    const query = registry.running("late-query");
    await sleep(150); // the instance has answered; the query is still open
    await announce("instance_stopped", "late-query", svc.id);
    const { instances } = await query;
    assert.deepEqual(instances.map((i) => i.id), [], "the stopped instance is not brought back");
    registry.close();
    await svc.stop();
  });

  test("an instance_started that arrives after the instance's stop (a re-send) is ignored", async () => {
    const svc = await host.serve({ name: "late-resend", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    const registry = new Registry(nc, { ttlMs: 10_000, jitterMs: 50, maxWaitMs: 1_000 }, logger);
    registry.start();
    await nc.flush();
    assert.deepEqual((await registry.running("late-resend")).instances.map((i) => i.id), [svc.id]);
    await announce("instance_stopped", "late-resend", svc.id);
    await announce("instance_started", "late-resend", svc.id);
    await sleep(50);
    const view = await registry.running("late-resend");
    assert.ok(!view.instances.some((i) => i.id === svc.id), "a stopped id stays stopped");
    registry.close();
    await svc.stop();
  });
});

describe("mesh events after JetStream went away", () => {
  test("a live subscriber gets each event at most twice (the first send, then plain), not once per re-send", async () => {
    const withJs = await startNatsServer({ jetstream: true });
    const m = await connect({ servers: withJs.url, name: "js-gone", logLevel: "silent", audit: { enabled: false }, trace: false, policy: { watch: false } });
    let without: NatsServer | undefined;
    let watcher: NatsConnection | undefined;
    try {
      m.events.emit({ type: "circuit_open", caller: "js-gone", target: "first.v1" });
      for (let i = 0; i < 100 && m.events.stats().sender.stored < 1; i++) await sleep(50);
      assert.equal(m.events.stats().sender.stored, 1, "the sender stored one event: it is in JetStream mode");
      await withJs.stop();
      without = await startNatsServer({ port: withJs.port }); // same address, no JetStream
      watcher = await natsConnect({ servers: without.url });
      let copies = 0;
      watcher.subscribe("svc.events.circuit_open.second", { callback: () => copies++ });
      await watcher.flush();
      await sleep(1_000); // reconnected (it retries every 250 ms)
      m.events.emit({ type: "circuit_open", caller: "js-gone", target: "second.v1" });
      await sleep(6_500); // three ack timeouts (2 s each)
      assert.ok(copies >= 1 && copies <= 2, `${copies} copies`);
      assert.ok(m.events.stats().sender.plain >= 1, "it went out plain");
    } finally {
      await m.close();
      await watcher?.close();
      await without?.stop();
    }
  });
});

describe("a stream that goes away under a process that stored into it", () => {
  test("mesh events: with createStream false and the stream deleted, events go out plain (they were held for ever)", async () => {
    const s = await startNatsServer({ jetstream: true });
    const raw = await natsConnect({ servers: s.url });
    const m = await connect({ servers: s.url, name: "stream-gone", logLevel: "silent", audit: { enabled: false }, trace: false, policy: { watch: false }, events: { createStream: false } });
    try {
      const jsm = await raw.jetstreamManager();
      await jsm.streams.add({ name: "SVC_EVENTS", subjects: ["svc.events.>"], duplicate_window: 120_000_000_000 });
      m.events.emit({ type: "circuit_open", caller: "stream-gone", target: "first.v1" });
      for (let i = 0; i < 100 && m.events.stats().sender.stored < 1; i++) await sleep(50);
      assert.equal(m.events.stats().sender.stored, 1);
      await jsm.streams.delete("SVC_EVENTS");
      let seen = 0;
      raw.subscribe("svc.events.circuit_open.later", { callback: () => seen++ });
      await raw.flush();
      m.events.emit({ type: "circuit_open", caller: "stream-gone", target: "later.v1" });
      m.events.emit({ type: "circuit_open", caller: "stream-gone", target: "later.v1" });
      for (let i = 0; i < 120 && m.events.stats().sender.plain < 1; i++) await sleep(50);
      assert.ok(m.events.stats().sender.plain >= 1, JSON.stringify(m.events.stats().sender));
      assert.ok(seen >= 2, `${seen} seen`);
    } finally {
      await m.close();
      await raw.close();
      await s.stop();
    }
  });

  test("audit records: one sent before JetStream went away is not re-sent after its re-send horizon (it could be stored twice); it is counted lost", async () => {
    const first = await startNatsServer({ jetstream: true });
    const host = await connect({ servers: first.url, name: "horizon-host", logLevel: "silent", trace: false, policy: { watch: false }, audit: { whenFull: "refuse", ackTimeoutMs: 200, resendHorizonMs: 1_000, closeTimeoutMs: 200 } });
    await host.serve({ name: "horizon", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    const caller = await connect({ servers: first.url, name: "horizon-caller", logLevel: "silent", audit: { enabled: false }, trace: false, policy: { watch: false } });
    let noJs: NatsServer | undefined;
    let back: NatsServer | undefined;
    try {
      await caller.call("horizon", "ping");
      for (let i = 0; i < 100 && host.auditStats()!.stored < 1; i++) await sleep(50);
      assert.equal(host.auditStats()!.stored, 1, "the first record is stored: the writer has prepared its stream");
      await first.stop();
      noJs = await startNatsServer({ port: first.port }); // JetStream gone
      await sleep(1_000);
      assert.equal(await caller.call("horizon", "ping", undefined, { timeoutMs: 3_000 }), "pong");
      await sleep(1_800); // its ack went missing, the stream cannot be seen, the horizon passes
      await noJs.stop();
      back = await startNatsServer({ port: first.port, jetstream: true }); // a fresh store
      const stats = await (async () => {
        for (let i = 0; i < 300; i++) {
          const st = host.auditStats()!;
          if (st.backlog === 0) return st;
          await sleep(50);
        }
        return host.auditStats()!;
      })();
      assert.equal(stats.backlog, 0);
      assert.equal(stats.lost, 1, JSON.stringify(stats));
      assert.equal(stats.stored, 1, "not stored a second time, late");
    } finally {
      await Promise.allSettled([caller.close(), host.close()]);
      await (back ?? noJs)?.stop();
    }
  });
});
