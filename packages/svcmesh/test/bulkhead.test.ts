// Bulkheads (maxConcurrent per endpoint per instance), endpoint discovery metadata
// (idempotent, max_concurrent) and the callee's rejection hook, against a real
// nats-server started for this file.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, headers as natsHeaders, type NatsConnection, RequestStrategy } from "nats";
import type { Mesh } from "svcmesh";
import { decodeReply, encodeBody } from "svcmesh/internal";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { waitFor } from "../../../test/helpers/wait.ts";
import { gated } from "./fixtures/gate.ts";
import { meshFailure, meshPool } from "../../../test/helpers/mesh.ts";
// The hook itself is tested on startService here; resilience.test.ts checks the events it becomes.
import type { MeshCalls } from "../src/calls.ts";
import { defaultLogger } from "../src/logger.ts";
import { Registry } from "../src/registry.ts";
import type { RejectionEvent } from "../src/server/context.ts";
import { startService } from "../src/server/service.ts";
import { PolicyState } from "../src/policy-state.ts";

let server: NatsServer;
let raw: NatsConnection;
const pool = meshPool(() => server.url);
const mesh = pool.open;

before(async () => {
  server = await startNatsServer();
  raw = await natsConnect({ servers: server.url });
});

after(async () => {
  await pool.closeAll();
  await raw.close();
  await server.stop();
});



describe("bulkheads", () => {
  test("a bulkhead full of slow calls answers the next with UNAVAILABLE at once, and recovers as slots free", async () => {
    const host = await mesh("bh-host");
    const gate = gated();
    let ran = 0;
    await host.serve({
      name: "bh-slow",
      version: "1.0.0",
      endpoints: {
        slow: { maxConcurrent: 2, handler: async (req: unknown) => { ran++; await gate.hold(); return req; } },
        other: { handler: () => "other" },
      },
    });
    const caller = await mesh("bh-caller");
    const first = [caller.call("bh-slow", "slow", 1, { timeoutMs: 10_000 }), caller.call("bh-slow", "slow", 2, { timeoutMs: 10_000 })];
    await waitFor("2 requests held", () => gate.waiting === 2, 5_000);

    const started = Date.now();
    const e = await meshFailure(caller.call("bh-slow", "slow", 3, { timeoutMs: 10_000 }));
    assert.ok(Date.now() - started < 5_000, "answered at once, not after the slow calls");
    assert.equal(e.code, "UNAVAILABLE");
    assert.match(e.message, /bh-slow\.slow is at capacity \(2 requests in flight/);
    assert.deepEqual(e.details, { maxConcurrent: 2 });
    assert.equal((await meshFailure(caller.call("bh-slow@1.0.0", "slow", 4))).code, "UNAVAILABLE", "the exact-version lane shares the bulkhead");
    assert.equal(await caller.call("bh-slow", "other"), "other", "other endpoints are not affected");
    assert.equal(ran, 2, "rejected requests never reach the handler");

    gate.releaseOne();
    assert.equal(await first[0], 1);
    const third = caller.call("bh-slow", "slow", 5, { timeoutMs: 10_000 });
    await waitFor("2 requests held", () => gate.waiting === 2, 5_000);
    assert.equal(ran, 3, "a freed slot is usable at once");
    assert.equal((await meshFailure(caller.call("bh-slow", "slow", 6))).code, "UNAVAILABLE", "full again");

    gate.releaseAll();
    assert.deepEqual(await Promise.all([first[1], third]), [2, 5]);
    const again = [7, 8].map((n) => caller.call("bh-slow", "slow", n, { timeoutMs: 10_000 }));
    await waitFor("2 requests held", () => gate.waiting === 2, 5_000);
    gate.releaseAll();
    assert.deepEqual(await Promise.all(again), [7, 8], "both slots free again once the slow calls are done");
  });

  test("handlers that throw or time out at the caller free their slot when they finish", async () => {
    const host = await mesh("bh-free-host");
    const gate = gated();
    await host.serve({
      name: "bh-free",
      version: "1.0.0",
      endpoints: {
        boom: { maxConcurrent: 1, handler: () => { throw new Error("boom"); } },
        sleepy: { maxConcurrent: 1, handler: () => gate.hold().then(() => "awake") },
      },
    });
    const caller = await mesh("bh-free-caller");
    for (let i = 0; i < 3; i++) assert.equal((await meshFailure(caller.call("bh-free", "boom"))).code, "HANDLER_ERROR");

    assert.equal((await meshFailure(caller.call("bh-free", "sleepy", undefined, { timeoutMs: 100 }))).code, "TIMEOUT");
    assert.equal(gate.waiting, 1, "the handler still runs after its caller gave up");
    assert.equal((await meshFailure(caller.call("bh-free", "sleepy"))).code, "UNAVAILABLE", "and still holds its slot");
    gate.releaseAll();
    await sleep(20);
    const p = caller.call("bh-free", "sleepy");
    await waitFor("1 requests held", () => gate.waiting === 1, 5_000);
    gate.releaseAll();
    assert.equal(await p, "awake");
  });
});

describe("endpoint discovery metadata", () => {
  test("idempotent is published as \"true\"/\"false\", max_concurrent when set", async () => {
    const host = await mesh("bh-meta-host");
    await host.serve({
      name: "bh-meta",
      version: "1.0.0",
      endpoints: {
        get: { idempotent: true, maxConcurrent: 64, handler: () => 1 },
        pay: { idempotent: false, handler: () => 2 },
        plain: { handler: () => 3 },
      },
    });
    const infos = [];
    for await (const info of await raw.services.client({ strategy: RequestStrategy.JitterTimer, maxWait: 1000, jitter: 100 }).info("bh-meta")) infos.push(info);
    assert.equal(infos.length, 1);
    const meta = Object.fromEntries(infos[0]!.endpoints.map((e) => [e.name, e.metadata ?? {}]));
    assert.equal(meta.get!.idempotent, "true");
    assert.equal(meta.get!.max_concurrent, "64");
    assert.equal(meta.pay!.idempotent, "false");
    assert.equal(meta.pay!.max_concurrent, undefined);
    assert.equal(meta.plain!.idempotent, "false");
    assert.ok(meta.plain!.input_schema, "the existing metadata is still there");
  });
});

describe("options", () => {
  test("bad maxConcurrent or idempotent values are refused with BAD_REQUEST", async () => {
    const host = await mesh("bh-bad-host");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ maxConcurrent: 0 }, /endpoint ping: maxConcurrent must be a whole number ≥ 1 \(got 0\)/],
      [{ maxConcurrent: -3 }, /maxConcurrent must be a whole number ≥ 1 \(got -3\)/],
      [{ maxConcurrent: 1.5 }, /maxConcurrent must be a whole number/],
      [{ maxConcurrent: Infinity }, /maxConcurrent must be a whole number/],
      [{ maxConcurrent: NaN }, /maxConcurrent must be a whole number/],
      [{ maxConcurrent: "8" }, /maxConcurrent must be a whole number ≥ 1 \(got "8"\)/],
      [{ idempotent: "yes" }, /endpoint ping: idempotent must be true or false \(got "yes"\)/],
      [{ idempotent: 1 }, /idempotent must be true or false/],
    ];
    for (const [extra, message] of cases) {
      const e = await meshFailure(host.serve({ name: "bh-bad", version: "1.0.0", endpoints: { ping: { handler: () => "pong", ...extra } } }));
      assert.equal(e.code, "BAD_REQUEST", JSON.stringify(extra));
      assert.match(e.message, message);
    }
  });
});

describe("rejection hook", () => {
  test("onRejected hears of each rate_limited and bulkhead_full rejection; a throwing listener changes no reply", async () => {
    const nc = await natsConnect({ servers: server.url });
    const logger = defaultLogger("bh-hook", "silent");
    const registry = new Registry(nc, { ttlMs: 10_000, jitterMs: 50, maxWaitMs: 1_000 }, logger);
    registry.start();
    const calls: MeshCalls = { call: () => Promise.reject(new Error("not in this test")), client: () => { throw new Error("not in this test"); } };
    const events: RejectionEvent[] = [];
    const gate = gated();
    const svc = await startService(
      {
        nc, registry, logger, calls, defaultTimeoutMs: 2_000, policy: new PolicyState(),
        telemetry: { tracing: false, followParentSampling: true, metrics: undefined, audit: undefined },
        onRejected: (e) => {
          events.push(e);
          throw new Error("listener bug");
        },
      },
      {
        name: "bh-hook",
        version: "1.0.0",
        rateLimits: { greedy: { rps: 1, burst: 1 } },
        endpoints: { hold: { maxConcurrent: 1, handler: () => gate.hold().then(() => "done") } },
      },
    );
    try {
      const request = (caller: string) => {
        const h = natsHeaders();
        h.set("Mesh-Caller", caller);
        return raw.request("svc.bh-hook.v1.hold", encodeBody(null), { timeout: 2_000, headers: h }).then((m) => {
          try {
            return decodeReply(m, "hold");
          } catch (e) {
            return (e as { code: string }).code;
          }
        });
      };
      const held = request("patient");
      await waitFor("1 requests held", () => gate.waiting === 1, 5_000);
      assert.equal(await request("patient"), "UNAVAILABLE");
      assert.equal(await request("greedy"), "UNAVAILABLE", "turned away by the bulkhead: its token is given back");
      gate.releaseAll();
      assert.equal(await held, "done");
      const greedy = request("greedy");
      await waitFor("1 requests held", () => gate.waiting === 1, 5_000);
      assert.equal(await request("greedy"), "RATE_LIMITED");
      gate.releaseAll();
      assert.equal(await greedy, "done");
      assert.deepEqual(events, [
        { type: "bulkhead_full", service: "bh-hook", endpoint: "hold", caller: "patient" },
        { type: "bulkhead_full", service: "bh-hook", endpoint: "hold", caller: "greedy" },
        { type: "rate_limited", service: "bh-hook", endpoint: "hold", caller: "greedy" },
      ]);
    } finally {
      gate.releaseAll();
      await svc.stop();
      registry.close();
      await nc.close();
    }
  });
});

// Compile-time: the new endpoint options are typed, and endpoint typing still works with them.
export async function typedOptions(m: Mesh): Promise<void> {
  await m.serve({
    name: "typed-bulkhead",
    version: "1.0.0",
    endpoints: {
      ok: { idempotent: true, maxConcurrent: 4, handler: (req) => req },
      // @ts-expect-error maxConcurrent is a number
      badCap: { maxConcurrent: "4", handler: () => 1 },
      // @ts-expect-error idempotent is a boolean
      badIdem: { idempotent: "yes", handler: () => 1 },
    },
  });
}
