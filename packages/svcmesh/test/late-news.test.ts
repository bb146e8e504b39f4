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
