// Retries, deadlines, fallbacks and settings, against a real nats-server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect } from "svcmesh";
import { meshFailure, meshPool } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
const pool = meshPool(() => server.url);

before(async () => {
  server = await startNatsServer();
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
