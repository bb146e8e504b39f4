// trace.rootSampling "mesh": the mesh decides, at sampleRate, whether a call that starts a
// trace is traced, and asks the SDK only for those; every later hop follows, and ok
// records are kept exactly for the traces kept. The SDK here has its default sampler
// (parent-based, every root recorded), as the option's documentation asks.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { connect as natsConnect, type NatsConnection } from "nats";
import { connect, type Mesh, type TraceEvent } from "svcmesh";
import { decodeTraceBatch, TRACE_ALL } from "svcmesh/internal";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(provider);
// With a context manager, a call made while a span is active continues that span's trace.
const contextManager = new AsyncLocalStorageContextManager().enable();
context.setGlobalContextManager(contextManager);

let server: NatsServer;
let raw: NatsConnection;
const meshes: Mesh[] = [];
const records: TraceEvent[] = [];
/** What the handler saw of its request's trace. */
const seen: { traceId: string; flags: number }[] = [];

async function open(name: string, sampleRate: number, rootSampling?: "sdk" | "mesh"): Promise<Mesh> {
  const m = await connect({ servers: server.url, name, logLevel: "silent", audit: { enabled: false }, trace: { sampleRate, flushMs: 20, ...(rootSampling ? { rootSampling } : {}) } });
  meshes.push(m);
  return m;
}

/** Spans and records of `caller`'s calls, after its records have had time to arrive. */
async function settle(caller: Mesh, name: string): Promise<{ spans: string[]; kept: TraceEvent[] }> {
  caller.flushTraces();
  await sleep(200);
  const spans = exporter.getFinishedSpans().map((s) => `${s.kind === 2 ? "CLIENT" : "SERVER"} ${s.spanContext().traceId}`);
  return { spans, kept: records.filter((r) => r.caller === name) };
}

before(async () => {
  server = await startNatsServer();
  raw = await natsConnect({ servers: server.url });
  raw.subscribe(TRACE_ALL, { callback: (_e, m) => records.push(...decodeTraceBatch(m.data).events) });
  await raw.flush();
  const host = await open("rs-host", 0, "mesh");
  await host.serve({
    name: "rs-echo",
    version: "1.0.0",
    endpoints: {
      say: { handler: (_: unknown, ctx) => (seen.push({ traceId: ctx.trace!.traceId, flags: ctx.trace!.flags }), "said") },
      fail: { handler: () => { throw new Error("no"); } },
    },
  });
});

after(async () => {
  await Promise.allSettled(meshes.map((m) => m.close()));
  await raw.close();
  await server.stop();
  await provider.shutdown();
  contextManager.disable();
});

test("at rate 0 the mesh traces no call it starts: no span anywhere, hops see an unsampled trace, only errors are recorded", async () => {
  exporter.reset();
  seen.length = 0;
  const caller = await open("rs-zero", 0, "mesh");
  for (let i = 0; i < 20; i++) assert.equal(await caller.call("rs-echo", "say", {}), "said");
  assert.equal((await meshFailure(caller.call("rs-echo", "fail", {}))).code, "HANDLER_ERROR");
  const { spans, kept } = await settle(caller, "rs-zero");
  assert.deepEqual(spans, [], "the SDK made no span, though its own sampler would have recorded every root");
  assert.equal(seen.length, 20);
  assert.ok(seen.every((s) => s.flags === 0 && /^[0-9a-f]{32}$/.test(s.traceId)), "each hop has a trace id and the unsampled flag");
  assert.equal(new Set(seen.map((s) => s.traceId)).size, 20, "a trace per call");
  assert.deepEqual(kept.map((r) => r.status), ["HANDLER_ERROR"], "errors are recorded, ok calls are not");
});

test("at rate 1 every call is traced by the SDK: CLIENT and SERVER spans in one trace, and its record", async () => {
  exporter.reset();
  seen.length = 0;
  const caller = await open("rs-all", 1, "mesh");
  assert.equal(await caller.call("rs-echo", "say", {}), "said");
  const { spans, kept } = await settle(caller, "rs-all");
  const traceId = seen[0]!.traceId;
  assert.equal(seen[0]!.flags, 1);
  assert.deepEqual(spans.sort(), [`CLIENT ${traceId}`, `SERVER ${traceId}`]);
  assert.deepEqual(kept.map((r) => [r.status, r.traceId]), [["ok", traceId]]);
});

test("a call under a sampled parent follows the parent, not the mesh's rate", async () => {
  exporter.reset();
  const caller = await open("rs-parent", 0, "mesh");
  const parent = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", flags: 1, state: "" };
  assert.equal(await caller.call("rs-echo", "say", {}, { trace: parent }), "said");
  const { spans, kept } = await settle(caller, "rs-parent");
  assert.deepEqual(spans.sort(), [`CLIENT ${parent.traceId}`, `SERVER ${parent.traceId}`]);
  assert.deepEqual(kept.map((r) => r.traceId), [parent.traceId], "the sampled trace's ok record is kept");
});

test("a call made while a span is active continues its trace, not the mesh's rate", async () => {
  exporter.reset();
  seen.length = 0;
  const caller = await open("rs-active", 0, "mesh");
  const outer = trace.getTracer("test");
  const traceId = await outer.startActiveSpan("outer", async (span) => {
    assert.equal(await caller.call("rs-echo", "say", {}), "said");
    span.end();
    return span.spanContext().traceId;
  });
  const { spans } = await settle(caller, "rs-active");
  assert.equal(seen[0]!.traceId, traceId, "the handler saw the active span's trace");
  assert.equal(seen[0]!.flags, 1);
  // The outer span, the call's CLIENT span and the handler's SERVER span, all in one trace
  // (settle names every span that is not CLIENT "SERVER").
  assert.deepEqual(spans.sort(), [`CLIENT ${traceId}`, `SERVER ${traceId}`, `SERVER ${traceId}`]);
});

test("rootSampling 'sdk' (the default) leaves the decision to the SDK's sampler, which here records every root", async () => {
  exporter.reset();
  const caller = await open("rs-sdk", 0);
  assert.equal(await caller.call("rs-echo", "say", {}), "said");
  const { spans } = await settle(caller, "rs-sdk");
  assert.equal(spans.filter((s) => s.startsWith("CLIENT")).length, 1);
  await assert.rejects(open("rs-bad", 0, "both" as "mesh"), /trace.rootSampling must be "sdk" or "mesh"/);
});
