// Retries, deadlines, fallbacks and settings, against a real nats-server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect } from "nats";
import { connect, MeshError } from "svcmesh";
import { decodeBody } from "svcmesh/internal";
import { z } from "zod";
import { meshFailure, meshPool } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
const pool = meshPool(() => server.url);

before(async () => {
  server = await startNatsServer({ jetstream: true });
});

after(async () => {
  await pool.closeAll();
  await server.stop();
});

describe("retries", () => {
  test("a call retried with backoff succeeds when an instance appears during the backoff", async () => {
    const caller = await connect({ servers: server.url, name: "late-caller", defaults: { retry: { attempts: 8, backoffMs: 100, maxBackoffMs: 200 } } });
    try {
      const started = Date.now();
      const call = caller.call<string>("appears", "hello", undefined, { timeoutMs: 5000 });
      await sleep(250);
      const host = await pool.open("appears-host");
      await host.serve({ name: "appears", version: "1.0.0", endpoints: { hello: { handler: () => "hi" } } });
      assert.equal(await call, "hi");
      assert.ok(Date.now() - started >= 250, "the answer came from the instance that started later");
    } finally {
      await caller.close();
    }
  });

  test("with retries off, nobody listening still fails fast with NO_RESPONDERS", async () => {
    const caller = await pool.open("no-retry-caller");
    const started = Date.now();
    const e = await meshFailure(caller.call("never-there", "x", undefined, { timeoutMs: 5000, retry: { attempts: 1 } }));
    assert.equal(e.code, "NO_RESPONDERS");
    assert.ok(Date.now() - started < 2000);
  });

  test("a timed-out call is retried for an idempotent endpoint and not for the others", async () => {
    const host = await pool.open("idem-host");
    const runs = { safe: 0, unsafe: 0 };
    await host.serve({
      name: "idem",
      version: "1.0.0",
      endpoints: {
        // The first run of each is slow; later runs answer at once.
        safe: { idempotent: true, handler: async () => (runs.safe++ === 0 ? sleep(400).then(() => "late") : "ok") },
        unsafe: { handler: async () => (runs.unsafe++ === 0 ? sleep(400).then(() => "late") : "ok") },
      },
    } as never);
    const caller = await connect({ servers: server.url, name: "idem-caller", defaults: { retry: { attempts: 3, backoffMs: 10, maxBackoffMs: 20, attemptTimeoutMs: 150 } } });
    try {
      assert.equal(await caller.call("idem", "safe", undefined, { timeoutMs: 2000 }), "ok");
      assert.equal(runs.safe, 2, "retried once after the first attempt timed out");
      assert.equal((await meshFailure(caller.call("idem", "unsafe", undefined, { timeoutMs: 2000 }))).code, "TIMEOUT");
      assert.equal(runs.unsafe, 1, "a non-idempotent endpoint is never run twice by a retry");
    } finally {
      await caller.close();
    }
  });
});

describe("circuit breaker", () => {
  test("opens after the threshold, fails fast while open, half-opens and closes after recovery, each transition an event", async () => {
    const watcher = await natsConnect({ servers: server.url });
    const events: { type: string; key?: string }[] = [];
    const sub = watcher.subscribe("svc.events.*.flaky", {
      callback: (_e, m) => {
        const type = m.subject.split(".")[2]!;
        if (type.startsWith("circuit_")) events.push({ type, key: (decodeBody(m.data) as { target?: string }).target });
      },
    });
    await watcher.flush();
    const host = await pool.open("flaky-host");
    let broken = true;
    let received = 0;
    await host.serve({
      name: "flaky",
      version: "1.0.0",
      endpoints: { work: { handler: () => { received++; if (broken) throw new MeshError("UNAVAILABLE", "database down"); return "ok"; } } },
    });
    const caller = await connect({
      servers: server.url,
      name: "breaker-caller",
      defaults: { retry: { attempts: 1 }, breaker: { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeoutMs: 400 } },
    });
    try {
      for (let i = 0; i < 5; i++) assert.equal((await meshFailure(caller.call("flaky", "work"))).code, "UNAVAILABLE");
      const seenBefore = received;
      for (let i = 0; i < 20; i++) {
        const e = await meshFailure(caller.call("flaky", "work"));
        assert.equal(e.code, "CIRCUIT_OPEN");
        assert.equal((e.details as { key: string }).key, "flaky.v1");
      }
      assert.equal(received, seenBefore, "while open, the service sees no requests");
      broken = false;
      await sleep(450);
      assert.equal(await caller.call("flaky", "work"), "ok", "the half-open probe goes through");
      assert.equal(await caller.call("flaky", "work"), "ok", "closed again");
      const until = Date.now() + 2000;
      while (events.length < 3 && Date.now() < until) await sleep(20);
      assert.deepEqual(events.map((e) => e.type), ["circuit_open", "circuit_half_open", "circuit_close"]);
      assert.ok(events.every((e) => e.key === "flaky.v1"), JSON.stringify(events));
    } finally {
      sub.unsubscribe();
      await watcher.close();
      await caller.close();
    }
  });

  test("the caller's own bad requests never open it", async () => {
    const host = await pool.open("picky-host");
    await host.serve({ name: "picky", version: "1.0.0", endpoints: { strict: { input: z.object({ n: z.number() }), handler: (r) => r.n } } });
    const caller = await connect({ servers: server.url, name: "picky-caller", defaults: { breaker: { volumeThreshold: 3, errorThresholdPercentage: 10 } } });
    try {
      for (let i = 0; i < 10; i++) assert.equal((await meshFailure(caller.call("picky", "strict", { n: "x" }))).code, "BAD_REQUEST");
      assert.equal(await caller.call("picky", "strict", { n: 7 }), 7);
    } finally {
      await caller.close();
    }
  });
});

describe("workflows", () => {
  test("a consumer started after a breaker opened still receives circuit_open, exactly once after acknowledging it", async () => {
    const host = await pool.open("wf-host");
    await host.serve({ name: "wf-broken", version: "2.0.0", endpoints: { run: { handler: () => { throw new Error("always"); } } } });
    const caller = await connect({ servers: server.url, name: "wf-caller", defaults: { retry: { attempts: 1 }, breaker: { volumeThreshold: 3, errorThresholdPercentage: 50 } } });
    for (let i = 0; i < 3; i++) await meshFailure(caller.call("wf-broken", "run"));
    assert.equal((await meshFailure(caller.call("wf-broken", "run"))).code, "CIRCUIT_OPEN");
    await caller.close(); // its events are stored before it goes

    const workflow = await pool.open("wf-consumer");
    const got: { type: string; target: string; deliveryCount: number }[] = [];
    const opts = { durable: "ops-breakers", types: ["circuit_open" as const], services: ["wf-broken"] };
    const first = await workflow.events.consume(opts, (event, d) => void got.push({ type: event.type, target: event.target, deliveryCount: d.deliveryCount }));
    const until = Date.now() + 5000;
    while (got.length === 0 && Date.now() < until) await sleep(20);
    await sleep(300); // would a second copy arrive?
    await first.stop();
    assert.deepEqual(got, [{ type: "circuit_open", target: "wf-broken.v2", deliveryCount: 1 }]);

    const again = await workflow.events.consume(opts, (event, d) => void got.push({ type: event.type, target: event.target, deliveryCount: d.deliveryCount }));
    await sleep(500);
    await again.stop();
    assert.equal(got.length, 1, "acknowledged: not delivered again to the same durable");
  });
});

describe("rejections become coalesced events", () => {
  test("a full bulkhead (at the callee) and a rate limit (at the caller's mirror) publish events with counts", async () => {
    const watcher = await natsConnect({ servers: server.url });
    const events: { type: string; count: number; caller: string; endpoint: string }[] = [];
    const sub = watcher.subscribe("svc.events.*.guarded", { callback: (_e, m) => events.push(decodeBody(m.data) as never) });
    await watcher.flush();
    const host = await pool.open("guarded-host");
    await host.serve({
      name: "guarded",
      version: "1.0.0",
      rateLimits: { "*": { rps: 1, burst: 2 } },
      endpoints: { slow: { maxConcurrent: 1, handler: () => sleep(300).then(() => "done") } },
    });
    // Of four calls at once: two over the rate limit (refused by the caller's mirror of it),
    // one over the bulkhead (refused by the callee), one served.
    const caller = await pool.open("guarded-caller");
    const results = await Promise.all(Array.from({ length: 4 }, () => caller.call("guarded", "slow", undefined, { retry: { attempts: 1 } }).then(() => "ok", (e: MeshError) => e.code)));
    try {
      assert.deepEqual([...results].sort(), ["RATE_LIMITED", "RATE_LIMITED", "UNAVAILABLE", "ok"].sort());
      const until = Date.now() + 3000;
      while (events.filter((e) => e.type === "bulkhead_full" || e.type === "rate_limited").length < 2 && Date.now() < until) await sleep(50);
      const bulkhead = events.filter((e) => e.type === "bulkhead_full");
      const limited = events.filter((e) => e.type === "rate_limited");
      assert.equal(bulkhead.reduce((n, e) => n + e.count, 0), 1);
      assert.ok(limited.reduce((n, e) => n + e.count, 0) >= 2, JSON.stringify(limited));
      assert.ok([...bulkhead, ...limited].every((e) => e.caller === "guarded-caller" && e.endpoint === "slow"));
    } finally {
      sub.unsubscribe();
      await watcher.close();
    }
  });
});

describe("caller-side rate limit mirror", () => {
  test("a caller over the limit the callee publishes for it fails fast locally", async () => {
    const host = await pool.open("mirror-host");
    let served = 0;
    await host.serve({ name: "mirror", version: "1.0.0", rateLimits: { "mirror-caller": { rps: 1, burst: 3 } }, endpoints: { ping: { handler: () => ++served } } });
    const caller = await pool.open("mirror-caller");
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await caller.call("mirror", "ping").then(() => "ok", (e: MeshError) => e));
    assert.equal(results.filter((r) => r === "ok").length, 3, "the burst");
    const refused = results.filter((r): r is MeshError => r !== "ok");
    assert.ok(refused.every((e) => e.code === "RATE_LIMITED" && (e.details as { local?: boolean }).local === true && (e.details as { retryAfterMs: number }).retryAfterMs > 0));
    assert.equal(served, 3, "refused calls never reached the service");
  });
});

describe("fallbacks", () => {
  test("return the fallback's value for the chosen codes only", async () => {
    const caller = await pool.open("fb-caller");
    const host = await pool.open("fb-host");
    await host.serve({ name: "fb", version: "1.0.0", endpoints: { boom: { handler: () => { throw new Error("down"); } } } });
    assert.equal(await caller.call("fb-missing", "x", undefined, { retry: { attempts: 1 }, fallback: { codes: ["NO_RESPONDERS"], value: "cached" } }), "cached");
    assert.deepEqual(await caller.call("fb", "boom", undefined, { fallback: { codes: ["HANDLER_ERROR"], compute: (e) => ({ code: e.code }) } }), { code: "HANDLER_ERROR" });
    const e = await meshFailure(caller.call("fb", "boom", undefined, { fallback: { codes: ["TIMEOUT"], value: "no" } }));
    assert.equal(e.code, "HANDLER_ERROR", "other codes still fail");
  });
});

describe("settings from code", () => {
  test("invalid settings are refused whole, before connecting", async () => {
    const e = await meshFailure(connect({ servers: "nats://127.0.0.1:1", name: "x", defaults: { retry: { attempts: 0 } } }));
    assert.equal(e.code, "BAD_REQUEST");
    assert.match(e.message, /defaults\.retry\.attempts/);
    const unknown = await meshFailure(connect({ servers: "nats://127.0.0.1:1", name: "x", services: { pay: { timeout: 5 } as never } }));
    assert.equal(unknown.code, "BAD_REQUEST");
  });

  test("an unknown key is refused at every level, with its path", async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ defaults: { breaker: { enable: false } } }, /defaults\.breaker: .*"enable"/],
      [{ defaults: { retry: { attemps: 5 } } }, /defaults\.retry: .*"attemps"/],
      [{ services: { pay: { retry: { backoff: 10 } } } }, /services\.pay\.retry: .*"backoff"/],
    ];
    for (const [settings, path] of cases) {
      const e = await meshFailure(connect({ servers: "nats://127.0.0.1:1", name: "x", ...settings }));
      assert.equal(e.code, "BAD_REQUEST");
      assert.match(e.message, path);
    }
  });

  test("a per-service timeout applies to calls to that service", async () => {
    const host = await pool.open("slow-host");
    await host.serve({ name: "slowpoke", version: "1.0.0", endpoints: { wait: { handler: async () => { await sleep(300); return "done"; } } } });
    const caller = await connect({ servers: server.url, name: "svc-caller", services: { slowpoke: { timeoutMs: 100 } } });
    try {
      const started = Date.now();
      assert.equal((await meshFailure(caller.call("slowpoke", "wait"))).code, "TIMEOUT");
      assert.ok(Date.now() - started < 290, "the service's own timeout, not the 2 s default");
      assert.equal(await caller.call("slowpoke", "wait", undefined, { timeoutMs: 1000 }), "done");
    } finally {
      await caller.close();
    }
  });
});
