// A hop whose incoming trace is not sampled follows that decision without asking the
// SDK's sampler (the default), or asks it at every hop (followParentSampling: false).
// The SDK here samples everything and is not parent-based, so the two differ visibly.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { trace } from "@opentelemetry/api";
import { AlwaysOnSampler, BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { connect, type Mesh } from "svcmesh";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ sampler: new AlwaysOnSampler(), spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(provider);

let server: NatsServer;
const meshes: Mesh[] = [];
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN = "00f067aa0ba902b7";

async function pair(service: string, followParentSampling: boolean): Promise<Mesh> {
  const options = { servers: server.url, logLevel: "silent" as const, audit: { enabled: false }, trace: { sampleRate: 0, followParentSampling } };
  const callee = await connect({ ...options, name: service });
  meshes.push(callee);
  await callee.serve({
    name: service,
    version: "1.0.0",
    // What a nested call would continue: the trace this request runs in.
    endpoints: { where: { handler: (_: unknown, ctx) => ({ traceId: ctx.trace?.traceId, spanId: ctx.trace?.spanId, flags: ctx.trace?.flags }) } },
  });
  const caller = await connect({ ...options, name: `${service}-caller` });
  meshes.push(caller);
  return caller;
}

before(async () => {
  server = await startNatsServer();
});

after(async () => {
  await Promise.allSettled(meshes.map((m) => m.close()));
  await server.stop();
  await provider.shutdown();
});

async function spansOf(traceId: string, atLeast: number): Promise<string[]> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    if (spans.length >= atLeast || Date.now() > deadline) return spans.map((s) => `${s.kind === 2 ? "CLIENT" : "SERVER"} ${s.name}`).sort();
    await sleep(20);
  }
}

test("unsampled parent, followed (default): no spans, the trace id carried, a new span id per hop", async () => {
  const caller = await pair("follows", true);
  const seen = await caller.call<{ traceId: string; spanId: string; flags: number }>("follows", "where", {}, { trace: { traceId: TRACE_ID, spanId: PARENT_SPAN, flags: 0, state: "" } });
  assert.equal(seen.traceId, TRACE_ID);
  assert.equal(seen.flags, 0);
  assert.match(seen.spanId, /^[0-9a-f]{16}$/);
  assert.notEqual(seen.spanId, PARENT_SPAN, "the CLIENT hop made a span id of its own, which the request continues");
  await sleep(100);
  assert.deepEqual(await spansOf(TRACE_ID, 0), [], "the SDK's sampler was not asked, so its always-on decision never applied");
});

test("unsampled parent, not followed: the SDK's sampler decides at every hop", async () => {
  const traceId = "5bf92f3577b34da6a3ce929d0e0e4737";
  const caller = await pair("asks", false);
  const seen = await caller.call<{ traceId: string; flags: number }>("asks", "where", {}, { trace: { traceId, spanId: PARENT_SPAN, flags: 0, state: "" } });
  assert.equal(seen.traceId, traceId);
  assert.equal(seen.flags, 1, "the always-on sampler sampled the server span");
  assert.deepEqual(await spansOf(traceId, 2), ["CLIENT asks/where", "SERVER asks/where"]);
});

test("sampled parent: spans recorded either way", async () => {
  const traceId = "6bf92f3577b34da6a3ce929d0e0e4738";
  const caller = meshes[1]!; // the "follows" pair's caller
  await caller.call("follows", "where", {}, { trace: { traceId, spanId: PARENT_SPAN, flags: 1, state: "" } });
  assert.deepEqual(await spansOf(traceId, 2), ["CLIENT follows/where", "SERVER follows/where"]);
});
