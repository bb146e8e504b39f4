// svc.trace records, with no OpenTelemetry SDK registered: one record per call on
// svc.trace.<service>.<endpoint>, published in batches; ok records sampled at the
// configured rate, errors always kept; the W3C trace context still crosses every hop.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import { connect, type Mesh, type TraceEvent } from "svcmesh";
import { decodeTraceBatch, TRACE_ALL } from "svcmesh/internal";
import { z } from "zod";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
let raw: NatsConnection;
const meshes: Mesh[] = [];
const received: TraceEvent[] = [];
let batches = 0;

async function open(name: string, trace: { sampleRate: number; flushMs?: number } | false): Promise<Mesh> {
  const m = await connect({ servers: server.url, name, logLevel: "silent", audit: { enabled: false }, trace: trace && { flushMs: 30, ...trace } });
  meshes.push(m);
  return m;
}

async function recordsOf(caller: string, atLeast: number, waitMs = 3_000): Promise<TraceEvent[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const mine = received.filter((e) => e.caller === caller);
    if (mine.length >= atLeast || Date.now() > deadline) return mine;
    await sleep(20);
  }
}

let hostId = "";

before(async () => {
  server = await startNatsServer();
  raw = await natsConnect({ servers: server.url });
  raw.subscribe(TRACE_ALL, {
    callback: (_err, msg) => {
      batches++;
      received.push(...decodeTraceBatch(msg.data).events);
    },
  });
  await raw.flush();
  const host = await open("te-host", false);
  const echo = await host.serve({
    name: "echo",
    version: "1.4.2",
    endpoints: {
      say: { input: z.object({ text: z.string() }), handler: ({ text }) => ({ text }) },
      fail: { handler: () => { throw new Error("no"); } },
      relay: { handler: async (_in, ctx) => ({ inner: await ctx.mesh.call("echo", "say", { text: "inner" }), trace: ctx.trace?.traceId }) },
    },
  });
  hostId = echo.id;
});

after(async () => {
  await Promise.allSettled(meshes.splice(0).map((m) => m.close()));
  await raw.close();
  await server.stop();
});

describe("svc.trace records", () => {
  test("one record per call with caller, instance, version, ids, latency, status and attempts", async () => {
    const caller = await open("te-all", { sampleRate: 1 });
    for (let i = 0; i < 20; i++) await caller.call("echo", "say", { text: `t${i}` });
    await meshFailure(caller.call("echo", "fail"));
    await meshFailure(caller.call("echo", "say", { text: 5 }));
    const records = await recordsOf("te-all", 22);
    assert.equal(records.length, 22, "exactly one record per call");
    assert.ok(batches < 22, `records travel in batches (${batches} messages so far)`);
    const ok = records.filter((r) => r.status === "ok");
    assert.equal(ok.length, 20);
    for (const r of ok) {
      assert.equal(r.service, "echo");
      assert.equal(r.endpoint, "say");
      assert.equal(r.instance, hostId, "the instance that answered");
      assert.equal(r.version, "1.4.2");
      assert.equal(r.attempts, 1);
      assert.equal(r.rate, 1);
      assert.match(r.traceId, /^[0-9a-f]{32}$/);
      assert.match(r.spanId, /^[0-9a-f]{16}$/);
      assert.ok(r.latencyMs > 0 && r.latencyMs < 2000);
      assert.ok(Math.abs(r.time - Date.now()) < 10_000);
    }
    assert.equal(new Set(records.map((r) => r.requestId)).size, 22, "request ids are unique per call");
    assert.deepEqual(records.filter((r) => r.status !== "ok").map((r) => `${r.endpoint}:${r.status}`).sort(), ["fail:HANDLER_ERROR", "say:BAD_REQUEST"]);
  });

  test("sampling: at rate 0 only errors are published; at 0.5 about half of the ok calls", async () => {
    const none = await open("te-none", { sampleRate: 0 });
    for (let i = 0; i < 30; i++) await none.call("echo", "say", { text: "x" });
    await meshFailure(none.call("echo", "fail"));
    await meshFailure(none.call("nobody-serves-this", "x", undefined, { timeoutMs: 300, retry: { attempts: 1 } }));
    const kept = await recordsOf("te-none", 2);
    await sleep(200); // any stray ok record would have arrived by now
    assert.deepEqual(received.filter((e) => e.caller === "te-none").map((r) => r.status).sort(), ["HANDLER_ERROR", "NO_RESPONDERS"]);
    assert.ok(kept.every((r) => r.rate === 0));
    const noResponders = kept.find((r) => r.status === "NO_RESPONDERS")!;
    assert.equal(noResponders.instance, "", "no instance answered");

    const half = await open("te-half", { sampleRate: 0.5 });
    const calls = 400;
    await Promise.all(Array.from({ length: calls }, (_, i) => half.call("echo", "say", { text: String(i) })));
    await sleep(300);
    const n = received.filter((e) => e.caller === "te-half").length;
    assert.ok(n > calls * 0.3 && n < calls * 0.7, `kept ${n} of ${calls} at rate 0.5`);
  });

  test("a call that finds no such version or endpoint is traced too: one NOT_FOUND record each, as the caller saw it", async () => {
    const caller = await open("te-notfound", { sampleRate: 0 });
    const noVersion = await meshFailure(caller.call("echo@^9", "say", { text: "x" }));
    await caller.call("echo", "say", { text: "x" }); // the route is cached now
    const noEndpoint = await meshFailure(caller.call("echo", "shout", { text: "x" }));
    assert.deepEqual([noVersion.code, noEndpoint.code], ["NOT_FOUND", "NOT_FOUND"]);
    const records = await recordsOf("te-notfound", 2);
    await sleep(200);
    const seen = received.filter((e) => e.caller === "te-notfound");
    assert.deepEqual(seen.map((r) => [r.service, r.endpoint, r.status, r.attempts]).sort(), [["echo", "say", "NOT_FOUND", 0], ["echo", "shout", "NOT_FOUND", 0]]);
    assert.ok(records.every((r) => r.instance === "" && r.traceId.length === 32), "no instance answered (0 attempts: nothing was sent); the trace id is the call's");
  });

  test("without an SDK the trace context still crosses hops: a nested call shares the outer call's trace id", async () => {
    const caller = await open("te-nested", { sampleRate: 1 });
    const reply = await caller.call<{ trace: string }>("echo", "relay");
    const records = await recordsOf("te-nested", 1);
    const outer = records.find((r) => r.endpoint === "relay")!;
    assert.equal(reply.trace, outer.traceId, "the handler's ctx.trace is the caller's trace");
    // The nested call is made by te-host, which publishes no records (trace: false), so
    // make the same check with a relaying mesh that does.
    const relayHost = await open("te-relay-host", { sampleRate: 1 });
    await relayHost.serve({ name: "relay", version: "1.0.0", endpoints: { go: { handler: async (_in, ctx) => ctx.mesh.call("echo", "say", { text: "via relay" }) } } });
    await caller.call("relay", "go");
    const [outerGo] = await recordsOf("te-nested", 2).then((rs) => rs.filter((r) => r.endpoint === "go"));
    const [inner] = (await recordsOf("te-relay-host", 1)).filter((r) => r.endpoint === "say");
    assert.ok(outerGo && inner);
    assert.equal(inner.traceId, outerGo.traceId, "one trace across both hops");
    assert.notEqual(inner.spanId, outerGo.spanId);
  });

  test("a retried call is one record with its attempts counted", async () => {
    const caller = await open("te-retry", { sampleRate: 1 });
    // Retried until the host is up (bounded by the deadline): connecting and serving can take
    // a second or more while the machine is busy: six attempts 100–150 ms apart did not always cover it.
    const late = caller.call("te-later", "hello", undefined, { timeoutMs: 8000, retry: { attempts: 10, backoffMs: 200, maxBackoffMs: 400 } });
    await sleep(120);
    const host = await open("te-later-host", false);
    await host.serve({ name: "te-later", version: "1.0.0", endpoints: { hello: { handler: () => "hi" } } });
    assert.equal(await late, "hi");
    const records = await recordsOf("te-retry", 1);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.status, "ok");
    assert.ok(records[0]!.attempts >= 2, `attempts ${records[0]!.attempts}`);
  });

  test("trace: false sends no traceparent and publishes nothing; a bad sample rate is refused", async () => {
    const off = await open("te-off", false);
    const reply = await off.call<{ trace?: string }>("echo", "relay");
    assert.equal(reply.trace, undefined, "no trace context reached the handler");
    await sleep(150);
    assert.equal(received.filter((e) => e.caller === "te-off").length, 0);
    await assert.rejects(connect({ servers: server.url, name: "bad", trace: { sampleRate: 2 } }), /sampleRate must be a number from 0 to 1/);
  });
});
