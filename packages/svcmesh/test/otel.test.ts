// The mesh seen by the real OpenTelemetry SDK: a three-hop call (clerk → claims, claims
// → auth and claims → payments) is one trace with correct parent/child links, and the
// mesh's metrics read back through an in-memory reader. The SDK is registered globally
// before any mesh connects (node runs each test file in its own process).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { context, metrics, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { type DataPoint, type Histogram, MeterProvider, MetricReader, type MetricData } from "@opentelemetry/sdk-metrics";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { connect, type Mesh } from "svcmesh";
import { z } from "zod";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

/** Collects on demand only. */
class TestReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const reader = new TestReader();
const meterProvider = new MeterProvider({ readers: [reader] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(tracerProvider);
metrics.setGlobalMeterProvider(meterProvider);

let server: NatsServer;
const meshes: Mesh[] = [];

async function open(name: string, extra: Parameters<typeof connect>[0] extends infer O ? Partial<O> : never = {}): Promise<Mesh> {
  const m = await connect({ servers: server.url, name, logLevel: "silent", audit: { enabled: false }, ...extra });
  meshes.push(m);
  return m;
}

async function spansUntil(count: number, traceId?: string): Promise<ReadableSpan[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const spans = exporter.getFinishedSpans().filter((s) => traceId === undefined || s.spanContext().traceId === traceId);
    if (spans.length >= count || Date.now() > deadline) return spans;
    await sleep(20);
  }
}

async function collect(): Promise<MetricData[]> {
  const { resourceMetrics } = await reader.collect();
  return resourceMetrics.scopeMetrics.filter((s) => s.scope.name === "svcmesh").flatMap((s) => s.metrics);
}

function points(all: MetricData[], name: string): DataPoint<unknown>[] {
  return (all.find((m) => m.descriptor.name === name)?.dataPoints ?? []) as DataPoint<unknown>[];
}

function point(all: MetricData[], name: string, attrs: Record<string, unknown>): DataPoint<unknown> | undefined {
  return points(all, name).find((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v));
}

before(async () => {
  server = await startNatsServer();
  const auth = await open("auth");
  await auth.serve({
    name: "auth",
    version: "1.0.0",
    endpoints: { verify: { input: z.object({ clerk: z.string() }), output: z.object({ ok: z.boolean() }), handler: ({ clerk }) => {
      // A span of the user's own, started in the handler: it must nest under the SERVER span.
      trace.getTracer("test").startSpan("auth-lookup").end();
      return { ok: clerk !== "mallory" };
    } } },
  });
  const payments = await open("payments");
  await payments.serve({
    name: "payments",
    version: "2.1.0",
    endpoints: {
      reimburse: {
        input: z.object({ claimId: z.string(), usd: z.number() }),
        handler: ({ claimId, usd }) => {
          if (usd > 1000) throw new Error("over the limit");
          return { txn: `T-${claimId}` };
        },
      },
    },
  });
  const claims = await open("claims");
  await claims.serve({
    name: "claims",
    version: "1.0.0",
    endpoints: {
      submit: {
        input: z.object({ claimId: z.string(), usd: z.number(), clerk: z.string() }),
        handler: async ({ claimId, usd, clerk }, ctx) => {
          const { ok } = await ctx.mesh.call<{ ok: boolean }>("auth", "verify", { clerk });
          if (!ok) return { status: "refused" };
          const paid = await ctx.mesh.call<{ txn: string }>("payments", "reimburse", { claimId, usd });
          return { status: "paid", txn: paid.txn };
        },
      },
    },
  });
});

after(async () => {
  await Promise.allSettled(meshes.splice(0).map((m) => m.close()));
  await server.stop();
  await tracerProvider.shutdown();
  await meterProvider.shutdown();
});

describe("OpenTelemetry traces", () => {
  test("a three-hop call is one trace: CLIENT and SERVER spans linked parent to child", async () => {
    const clerk = await open("clerk");
    exporter.reset();
    const tracer = trace.getTracer("test");
    let rootTraceId = "";
    let rootSpanId = "";
    const reply = await tracer.startActiveSpan("clerk-submits", async (root) => {
      rootTraceId = root.spanContext().traceId;
      rootSpanId = root.spanContext().spanId;
      try {
        return await clerk.call("claims", "submit", { claimId: "C-1", usd: 40, clerk: "ann" });
      } finally {
        root.end();
      }
    });
    assert.deepEqual(reply, { status: "paid", txn: "T-C-1" });
    // root + clerk→claims (client, server) + claims→auth (client, server, the handler's own) + claims→payments (client, server)
    const spans = await spansUntil(8, rootTraceId);
    assert.equal(spans.length, 8, `spans: ${spans.map((s) => s.name).join(", ")}`);
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (s: ReadableSpan) => byId.get(s.parentSpanContext?.spanId ?? "");
    const find = (kind: SpanKind, service: string) => {
      const found = spans.filter((s) => s.kind === kind && s.attributes["rpc.service"] === service);
      assert.equal(found.length, 1, `one ${SpanKind[kind]} span for ${service}`);
      return found[0]!;
    };
    const clientClaims = find(SpanKind.CLIENT, "claims");
    const serverClaims = find(SpanKind.SERVER, "claims");
    const clientAuth = find(SpanKind.CLIENT, "auth");
    const serverAuth = find(SpanKind.SERVER, "auth");
    const clientPay = find(SpanKind.CLIENT, "payments");
    const serverPay = find(SpanKind.SERVER, "payments");

    assert.equal(clientClaims.parentSpanContext?.spanId, rootSpanId, "the first CLIENT span is a child of the active span");
    assert.equal(parentOf(serverClaims), clientClaims);
    assert.equal(parentOf(clientAuth), serverClaims, "calls made by a handler are children of its SERVER span");
    assert.equal(parentOf(clientPay), serverClaims);
    assert.equal(parentOf(serverAuth), clientAuth);
    assert.equal(parentOf(serverPay), clientPay);
    assert.equal(parentOf(spans.find((s) => s.name === "auth-lookup")!), serverAuth, "a handler's own spans are children of its SERVER span");
    for (const s of [serverClaims, serverAuth, serverPay]) assert.equal(s.parentSpanContext?.isRemote, true, "server spans continue a remote parent");

    // Names and attributes per the RPC/messaging conventions.
    assert.equal(clientPay.name, "payments/reimburse");
    assert.equal(clientPay.attributes["rpc.system"], "nats");
    assert.equal(clientPay.attributes["messaging.system"], "nats");
    assert.equal(clientPay.attributes["rpc.method"], "reimburse");
    assert.equal(clientPay.attributes["svcmesh.caller"], "claims");
    assert.equal(clientPay.attributes["svcmesh.attempts"], 1);
    assert.equal(serverPay.attributes["svcmesh.caller"], "claims");
    assert.equal(serverPay.attributes["messaging.destination.name"], "svc.payments.v2.reimburse");
    assert.equal(serverPay.attributes["svcmesh.instance"], clientPay.attributes["svcmesh.instance"], "the client span names the instance that answered");
    assert.equal(serverClaims.attributes["svcmesh.request_id"], clientClaims.attributes["svcmesh.request_id"]);
    // Instrumentation leaves a success UNSET (the spec: OK is final and for the application to set).
    for (const s of spans.filter((x) => x.kind !== SpanKind.INTERNAL)) assert.equal(s.status.code, SpanStatusCode.UNSET, s.name);
  });

  test("a failing hop marks its spans and every span above it with the error code", async () => {
    const clerk = await open("clerk-2");
    exporter.reset();
    const e = await meshFailure(clerk.call("claims", "submit", { claimId: "C-2", usd: 5000, clerk: "ann" }));
    assert.equal(e.code, "HANDLER_ERROR");
    const spans = await spansUntil(6);
    const traceIds = new Set(spans.map((s) => s.spanContext().traceId));
    assert.equal(traceIds.size, 1, "without an active span the call starts one new trace for all hops");
    const failed = spans.filter((s) => s.status.code === SpanStatusCode.ERROR).map((s) => `${SpanKind[s.kind]} ${s.name} ${String(s.attributes["error.type"])}`).sort();
    assert.deepEqual(failed, [
      "CLIENT claims/submit HANDLER_ERROR",
      "CLIENT payments/reimburse HANDLER_ERROR",
      "SERVER claims/submit HANDLER_ERROR",
      "SERVER payments/reimburse HANDLER_ERROR",
    ]);
    const clientPay = spans.find((s) => s.kind === SpanKind.CLIENT && s.name === "payments/reimburse")!;
    assert.match(clientPay.status.message ?? "", /over the limit/);
  });

  test("a traceparent from a raw NATS client is continued; a malformed one starts a new trace", async () => {
    const clerk = await open("clerk-3");
    exporter.reset();
    const parent = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", flags: 1, state: "vendor=abc" };
    await clerk.call("auth", "verify", { clerk: "ann" }, { trace: parent });
    const spans = await spansUntil(2, parent.traceId);
    const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
    const client = spans.find((s) => s.kind === SpanKind.CLIENT)!;
    assert.equal(client.parentSpanContext?.spanId, parent.spanId);
    assert.equal(server.parentSpanContext?.spanId, client.spanContext().spanId);
    assert.equal(server.spanContext().traceState?.get("vendor"), "abc", "tracestate travels with the trace");
  });
});

describe("OpenTelemetry metrics", () => {
  test("calls, durations, errors by code, retries and server requests read back through a metric reader", async () => {
    const clerk = await open("metrics-clerk");
    for (let i = 0; i < 5; i++) await clerk.call("auth", "verify", { clerk: "ann" });
    await meshFailure(clerk.call("payments", "reimburse", { claimId: "X", usd: 5000 }));
    // A call retried once: nobody serves "later" until after the first attempt.
    const late = clerk.call("later", "hello", undefined, { timeoutMs: 3000, retry: { attempts: 5, backoffMs: 150, maxBackoffMs: 200 } });
    await sleep(100);
    const host = await open("later-host");
    await host.serve({ name: "later", version: "1.0.0", endpoints: { hello: { handler: () => "hi" } } });
    assert.equal(await late, "hi");

    const all = await collect();
    const ok = point(all, "svcmesh.client.calls", { "rpc.service": "auth", "rpc.method": "verify", "svcmesh.status": "ok" });
    assert.ok(ok && (ok.value as number) >= 5, "ok calls counted");
    const failed = point(all, "svcmesh.client.errors", { "rpc.service": "payments", "error.type": "HANDLER_ERROR" });
    assert.ok(failed && (failed.value as number) >= 1, "errors counted by code");
    const duration = point(all, "rpc.client.duration", { "rpc.service": "auth", "svcmesh.status": "ok" });
    assert.ok(duration && (duration.value as Histogram).count >= 5, "durations recorded");
    assert.ok(((duration!.value as Histogram).sum ?? 0) > 0);
    const retries = point(all, "svcmesh.client.retries", { "rpc.service": "later", "rpc.method": "hello" });
    assert.ok(retries && (retries.value as number) >= 1, "retries counted");
    const served = point(all, "svcmesh.server.requests", { "rpc.service": "auth", "rpc.method": "verify", "svcmesh.status": "ok" });
    assert.ok(served && (served.value as number) >= 5, "requests counted at the callee");
    const serverErr = point(all, "svcmesh.server.requests", { "rpc.service": "payments", "svcmesh.status": "HANDLER_ERROR" });
    assert.ok(serverErr && (serverErr.value as number) >= 1);
    assert.ok(point(all, "rpc.server.duration", { "rpc.service": "auth" }));
  });

  test("in-flight requests per endpoint, breaker state and rate-limit rejections", async () => {
    const host = await open("gauges-host");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    await host.serve({
      name: "gauges",
      version: "1.0.0",
      rateLimits: { "limited-caller": { rps: 1, burst: 1 } },
      endpoints: {
        slow: { handler: async () => { await gate; return "done"; } },
        broken: { handler: () => { throw new Error("always"); } },
        quick: { handler: () => "ok" },
      },
    });
    const caller = await open("gauges-caller", { defaults: { retry: { attempts: 1 }, breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 } } });
    const pending = [caller.call("gauges", "slow"), caller.call("gauges", "slow")];
    await sleep(150);
    let all = await collect();
    assert.equal(point(all, "svcmesh.server.in_flight", { "rpc.service": "gauges", "rpc.method": "slow" })?.value, 2);
    release();
    await Promise.all(pending);
    all = await collect();
    assert.equal(point(all, "svcmesh.server.in_flight", { "rpc.service": "gauges", "rpc.method": "slow" })?.value, 0);

    for (let i = 0; i < 5; i++) await caller.call("gauges", "broken").catch(() => undefined);
    assert.equal((await meshFailure(caller.call("gauges", "quick"))).code, "CIRCUIT_OPEN");
    all = await collect();
    assert.equal(point(all, "svcmesh.breaker.state", { "svcmesh.target": "gauges.v1" })?.value, 2, "2 = open");
    const refused = point(all, "svcmesh.client.errors", { "rpc.service": "gauges", "error.type": "CIRCUIT_OPEN" });
    assert.ok(refused && (refused.value as number) >= 1, "calls refused by the breaker are counted too");

    const limited = await open("limited-caller", { defaults: { retry: { attempts: 1 } } });
    const results = await Promise.allSettled(Array.from({ length: 4 }, () => limited.call("gauges", "quick")));
    assert.ok(results.some((r) => r.status === "rejected"));
    all = await collect();
    const rejections = points(all, "svcmesh.rate_limited").filter((p) => p.attributes["svcmesh.caller"] === "limited-caller");
    assert.ok(rejections.reduce((n, p) => n + (p.value as number), 0) >= 1, "rate-limit rejections counted (client mirror or server)");
  });
});
