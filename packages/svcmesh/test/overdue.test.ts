// Handlers that never settle, against a real nats-server started for this file: a running
// instance warns once per request whose handler runs well past its deadline, keeps its
// bulkhead slot held, says so when it finally settles, keeps its logging bounded under a
// flood, counts them (ServiceHandle.overdue, the svcmesh.server.overdue gauge) and stops
// sweeping when stopped. The instances are started with startService to shorten the
// grace (an internal option); callers are ordinary meshes. The MeterProvider is
// registered before anything is made (node runs each test file in its own process).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { metrics } from "@opentelemetry/api";
import { type DataPoint, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { connect as natsConnect, type NatsConnection, RequestStrategy } from "nats";
import pino from "pino";
import { connect, type Mesh } from "svcmesh";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { waitFor } from "../../../test/helpers/wait.ts";
import { gated } from "./fixtures/gate.ts";
import type { MeshCalls } from "../src/calls.ts";
import { defaultLogger } from "../src/logger.ts";
import { PolicyState } from "../src/policy-state.ts";
import { Registry } from "../src/registry.ts";
import { HandlerWatch, type OverdueTiming } from "../src/server/overdue.ts";
import type { EndpointRuntime } from "../src/server/endpoint.ts";
import { type InstanceHandle, type ServeOptions, startService } from "../src/server/service.ts";
import { MeshMetrics } from "../src/telemetry/metrics.ts";

class TestReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}
const reader = new TestReader();
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));

interface Line {
  level: number;
  msg: string;
  endpoint?: string;
  requestId?: string;
  caller?: string;
  pastDeadlineMs?: number;
  ranMs?: number;
  overdue?: number;
  maxConcurrent?: number;
  more?: number;
  abandoned?: number;
  time: number;
}
const WARN = 40;
const INFO = 30;

let server: NatsServer;
let nc: NatsConnection;
let registry: Registry;
const callers: Mesh[] = [];
const stops: (() => Promise<void>)[] = [];

before(async () => {
  server = await startNatsServer();
  nc = await natsConnect({ servers: server.url });
  registry = new Registry(nc, { ttlMs: 10_000, jitterMs: 50, maxWaitMs: 1_000 }, defaultLogger("overdue-registry", "silent"));
  registry.start();
});

after(async () => {
  await Promise.allSettled(stops.splice(0).map((s) => s()));
  await Promise.allSettled(callers.splice(0).map((m) => m.close()));
  registry.close();
  await nc.close();
  await server.stop();
});

/** An instance with a short grace, its log lines collected. */
async function serve(spec: ServeOptions, overdue: OverdueTiming, metricsOn = false): Promise<{ svc: InstanceHandle; lines: Line[] }> {
  const lines: Line[] = [];
  const logger = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l)) });
  const calls: MeshCalls = { call: () => Promise.reject(new Error("not in this test")), client: () => { throw new Error("not in this test"); } };
  let svc!: InstanceHandle;
  const sources = { breakers: () => [], inFlight: () => svc.endpointLoads(), auditBacklog: () => 0 };
  svc = await startService(
    {
      nc, registry, logger, calls, defaultTimeoutMs: 2_000, policy: new PolicyState(), overdue,
      telemetry: { tracing: false, followParentSampling: true, metrics: metricsOn ? MeshMetrics.create(sources) : undefined, audit: undefined },
    },
    spec,
  );
  stops.push(() => svc.stop());
  return { svc, lines };
}

async function caller(name: string): Promise<Mesh> {
  // No retries, no breaker: every call here is one request, and timeouts are the point.
  const m = await connect({ servers: server.url, name, logLevel: "silent", audit: { enabled: false }, trace: false, defaults: { retry: { attempts: 1 }, breaker: { enabled: false } } });
  callers.push(m);
  return m;
}



describe("handlers running past their deadlines", () => {
  test("a hung handler is warned of once after the grace, keeps its slot, and is logged again once when it settles", async () => {
    const gate = gated();
    const ids: string[] = [];
    const { svc, lines } = await serve(
      {
        name: "ovd-one",
        version: "1.0.0",
        endpoints: { work: { maxConcurrent: 1, handler: async (input: unknown, ctx) => { ids.push(ctx.requestId); if (input === "hang") await gate.hold(); return "done"; } } },
      },
      { graceMs: 400, sweepMs: 50, logEveryMs: 1_000 },
    );
    const m = await caller("ovd-one-caller");
    const called = Date.now();
    assert.equal((await meshFailure(m.call("ovd-one", "work", "hang", { timeoutMs: 200 }))).code, "TIMEOUT");
    const [id] = ids;
    assert.ok(id);
    const warnings = () => lines.filter((l) => l.level === WARN && l.requestId === id);
    assert.equal(warnings().length, 0, "not yet: the grace has not passed");

    await waitFor("the warning", () => warnings().length > 0);
    const warned = Date.now();
    assert.ok(warned - called >= 200 + 400, `warned ${warned - called} ms after the call: not before deadline + grace`);
    const w = warnings()[0]!;
    assert.equal(w.endpoint, "work");
    assert.equal(w.caller, "ovd-one-caller");
    assert.ok(w.pastDeadlineMs! >= 400, `pastDeadlineMs ${w.pastDeadlineMs}`);
    assert.equal(w.overdue, 1);
    assert.equal(w.maxConcurrent, 1);
    assert.match(w.msg, /ovd-one\.work: a handler is still running \d+\.\d s past its request's deadline/);
    assert.match(w.msg, new RegExp(`request ${id} from ovd-one-caller`));
    assert.match(w.msg, /it keeps its bulkhead slot until it settles; 1 of its 1 bulkhead slot\(s\) now held by overdue handlers \(it refuses every call until one settles\)/);
    assert.equal(svc.overdue, 1);
    assert.equal(svc.inFlight, 1);
    assert.deepEqual([...svc.endpointLoads()], [["ovd-one", "work", 1, 1]]);

    const refused = await meshFailure(m.call("ovd-one", "work", "quick"));
    assert.equal(refused.code, "UNAVAILABLE", "the slot is still held: the bulkhead is full");
    await sleep(300); // several sweeps
    assert.equal(warnings().length, 1, "one warning per request, not one per sweep");

    gate.releaseAll();
    const settled = () => lines.filter((l) => l.level === INFO && l.requestId === id);
    await waitFor("the settled line", () => settled().length > 0);
    const s = settled()[0]!;
    assert.ok(s.ranMs! >= 200 + 400, `ranMs ${s.ranMs}`);
    assert.equal(s.overdue, 0);
    assert.match(s.msg, new RegExp(`the overdue handler of request ${id} settled after running \\d+\\.\\d s`));
    assert.equal(svc.overdue, 0);
    assert.equal(await m.call("ovd-one", "work", "quick"), "done", "the slot is free again");
    await sleep(200);
    assert.equal(settled().length, 1, "logged once");
    assert.equal(warnings().length, 1);
  });

  test("a handler that settles within the grace is not reported", async () => {
    const gate = gated();
    const { svc, lines } = await serve(
      { name: "ovd-late", version: "1.0.0", endpoints: { work: { handler: async () => { await gate.hold(); return "done"; } } } },
      { graceMs: 600, sweepMs: 50, logEveryMs: 1_000 },
    );
    const m = await caller("ovd-late-caller");
    assert.equal((await meshFailure(m.call("ovd-late", "work", undefined, { timeoutMs: 100 }))).code, "TIMEOUT");
    await sleep(200);
    gate.releaseAll();
    await waitFor("the handler to settle", () => svc.inFlight === 0);
    await sleep(700);
    assert.deepEqual(lines.filter((l) => l.endpoint === "work"), []);
    assert.equal(svc.overdue, 0);
  });

  test("a flood of hung handlers logs a bounded number of lines that still account for every one", async () => {
    const gate = gated();
    const N = 200;
    const { svc, lines } = await serve(
      { name: "ovd-flood", version: "1.0.0", endpoints: { work: { handler: async () => { await gate.hold(); return "done"; } } } },
      { graceMs: 200, sweepMs: 50, logEveryMs: 600 },
    );
    const m = await caller("ovd-flood-caller");
    // Two waves, a sweep or more apart: the second comes while the first's line holds the window.
    const wave = (n: number) => Promise.all(Array.from({ length: n }, () => meshFailure(m.call("ovd-flood", "work", undefined, { timeoutMs: 100 }))));
    await wave(N / 2);
    await sleep(150);
    await wave(N / 2);
    assert.equal(gate.waiting, N);
    const warns = () => lines.filter((l) => l.level === WARN && l.endpoint === "work");
    // Each line names one request (or none) and counts the others it stands for.
    const accounted = (ls: Line[]) => ls.reduce((n, l) => n + (l.requestId !== undefined ? 1 : 0) + (l.more ?? 0), 0);
    await waitFor("every overdue handler counted", () => svc.overdue === N);
    await waitFor("every overdue handler logged or counted", () => accounted(warns()) === N);
    await sleep(700);
    // One line per endpoint per logEveryMs (600 ms) at most: 2 or 3 here on a machine that keeps up.
    const bounded = (ls: Line[]) => ls.length <= Math.min(10, 1 + Math.ceil((Date.now() - ls[0]!.time) / 600));
    assert.ok(bounded(warns()), `${warns().length} warnings for ${N} hung handlers: ${JSON.stringify(warns().map((l) => l.msg))}`);
    assert.equal(accounted(warns()), N, "none warned of twice");
    assert.ok(warns().some((l) => (l.more ?? 0) > 0 && /more became overdue|more handler\(s\) became overdue/.test(l.msg)));

    gate.releaseAll();
    const infos = () => lines.filter((l) => l.level === INFO && l.endpoint === "work");
    await waitFor("every settled one logged or counted", () => accounted(infos()) === N);
    assert.ok(bounded(infos()), `${infos().length} info lines for ${N} settled handlers`);
    assert.equal(svc.overdue, 0);
    assert.equal(svc.inFlight, 0);
  });

  test("the svcmesh.server.overdue gauge and $SRV.STATS count them per endpoint", async () => {
    const gate = gated();
    const { svc } = await serve(
      { name: "ovd-gauge", version: "1.0.0", endpoints: { hang: { handler: async () => { await gate.hold(); return 1; } }, fine: { handler: () => 2 } } },
      { graceMs: 200, sweepMs: 50, logEveryMs: 1_000 },
      true,
    );
    const m = await caller("ovd-gauge-caller");
    await Promise.all([1, 2].map(() => meshFailure(m.call("ovd-gauge", "hang", undefined, { timeoutMs: 100 }))));
    await waitFor("both overdue", () => svc.overdue === 2);
    const value = async (name: string, method: string) => {
      const { resourceMetrics } = await reader.collect();
      const points = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).filter((x) => x.descriptor.name === name).flatMap((x) => x.dataPoints as DataPoint<number>[]);
      return points.find((p) => p.attributes["rpc.service"] === "ovd-gauge" && p.attributes["rpc.method"] === method)?.value;
    };
    assert.equal(await value("svcmesh.server.overdue", "hang"), 2);
    assert.equal(await value("svcmesh.server.overdue", "fine"), 0);
    assert.equal(await value("svcmesh.server.in_flight", "hang"), 2);
    const stats = async () => {
      const all = [];
      for await (const s of await nc.services.client({ strategy: RequestStrategy.JitterTimer, maxWait: 1_000, jitter: 100 }).stats("ovd-gauge")) all.push(s);
      assert.equal(all.length, 1);
      return Object.fromEntries((all[0]!.endpoints ?? []).map((e) => [e.name, e.data]));
    };
    assert.deepEqual(await stats(), { hang: { in_flight: 2, overdue: 2 }, fine: { in_flight: 0, overdue: 0 } }, "nats micro stats shows them too");
    gate.releaseAll();
    await waitFor("settled", () => svc.inFlight === 0);
    assert.equal(await value("svcmesh.server.overdue", "hang"), 0);
  });

  test("stop() with overdue handlers still returns by the last deadline, says it abandoned them, and sweeps no more", async () => {
    const gate = gated();
    const ids: string[] = [];
    const { svc, lines } = await serve(
      { name: "ovd-stop", version: "1.0.0", endpoints: { work: { handler: async (_: unknown, ctx) => { ids.push(ctx.requestId); await gate.hold(); return "done"; } } } },
      { graceMs: 400, sweepMs: 50, logEveryMs: 100 },
    );
    const m = await caller("ovd-stop-caller");
    assert.equal((await meshFailure(m.call("ovd-stop", "work", undefined, { timeoutMs: 100 }))).code, "TIMEOUT");
    await waitFor("the first is warned of", () => lines.some((l) => l.level === WARN && l.requestId === ids[0]));
    // A second one whose deadline is still ahead: stop() waits for it until then (+250 ms),
    // which is before it becomes overdue (+400 ms).
    const second = meshFailure(m.call("ovd-stop", "work", undefined, { timeoutMs: 600 }));
    await waitFor("the second runs", () => gate.waiting === 2);
    const t0 = Date.now();
    await svc.stop();
    assert.ok(Date.now() - t0 < 2_000, `stop() took ${Date.now() - t0} ms`);
    assert.equal((await second).code, "TIMEOUT");
    assert.ok(lines.some((l) => l.abandoned === 2 && /still running past their requests' deadlines/.test(l.msg)), JSON.stringify(lines.map((l) => l.msg)));
    await sleep(600); // past the second's deadline + grace
    assert.ok(!lines.some((l) => l.level === WARN && l.requestId === ids[1]), "a stopped instance no longer sweeps");
    assert.equal(svc.overdue, 1);
    gate.releaseAll();
    await waitFor("the abandoned handlers settle", () => svc.inFlight === 0);
    assert.equal(svc.overdue, 0);
  });
});

describe("the sweep timer", () => {
  test("runs only while requests are in flight: armed by the first, cleared by a sweep that finds none, armed again", async (t) => {
    const set = t.mock.method(globalThis, "setInterval");
    const cleared = t.mock.method(globalThis, "clearInterval");
    const watch = new HandlerWatch(pino({ level: "silent" }), "sweep-svc", { graceMs: 10_000, sweepMs: 20, logEveryMs: 10_000 });
    const ep = { name: "e", maxConcurrent: Infinity, inFlight: 0, overdue: 0 } as unknown as EndpointRuntime;
    const meta = { caller: "c", deadline: Date.now() + 60_000, requestId: "r", token: "", policy: "", traceparent: "", tracestate: "" };
    const a = watch.enter(ep, meta, Date.now());
    const b = watch.enter(ep, meta, Date.now());
    assert.equal(set.mock.callCount(), 1, "one timer for the instance, armed by the first request");
    watch.leave(a);
    await sleep(80); // sweeps with one request still in flight
    assert.equal(cleared.mock.callCount(), 0);
    watch.leave(b);
    await waitFor("a sweep to find nothing in flight and clear the timer", () => cleared.mock.callCount() === 1, 2_000);
    await sleep(80);
    assert.equal(set.mock.callCount(), 1, "not armed again while idle");
    watch.leave(watch.enter(ep, meta, Date.now()));
    assert.equal(set.mock.callCount(), 2, "armed again by the next request");
    watch.close();
    assert.equal(cleared.mock.callCount(), 2);
  });
});
