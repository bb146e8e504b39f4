// Serve and call against a real nats-server started for this file.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from "nats";
import { type Mesh, MeshError } from "svcmesh";
import { decodeBody, encodeBody, rawHeaderBlock, readRequestMeta } from "svcmesh/internal";
import { z } from "zod";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { meshFailure, meshPool } from "../../../test/helpers/mesh.ts";
import { waitFor } from "../../../test/helpers/wait.ts";

let server: NatsServer;
const pool = meshPool(() => server.url);
const mesh = pool.open;


const codeOf = meshFailure;

const Claim = z.object({ claimId: z.string(), usd: z.number().positive() });
const Txn = z.object({ txn: z.string(), by: z.string() });

before(async () => {
  server = await startNatsServer();
});

after(async () => {
  await pool.closeAll();
  await server.stop();
});

describe("round trip", () => {
  test("a call reaches the handler with caller and deadline, and returns its validated output", async () => {
    const svcMesh = await mesh("payments-host");
    const seen: { caller: string; remaining: number; requestId: string }[] = [];
    await svcMesh.serve({
      name: "rt-payments",
      version: "2.1.0",
      endpoints: {
        reimburse: {
          input: Claim,
          output: Txn,
          handler: async (req, ctx) => {
            seen.push({ caller: ctx.caller, remaining: ctx.remainingMs, requestId: ctx.requestId });
            return { txn: `T-${req.claimId}-${req.usd}`, by: ctx.instance };
          },
        },
      },
    });
    const claims = await mesh("claims");
    const out = await claims.call<{ txn: string; by: string }>("rt-payments@^2", "reimburse", { claimId: "C1", usd: 40 }, { timeoutMs: 1500 });
    assert.equal(out.txn, "T-C1-40");
    assert.ok(out.by.length > 0);
    assert.equal(seen[0]!.caller, "claims");
    assert.ok(seen[0]!.remaining > 1000 && seen[0]!.remaining <= 1500, `remaining ${seen[0]!.remaining}`);
    assert.ok(seen[0]!.requestId.length > 0);
    const client = claims.client("rt-payments@2.1.0");
    assert.equal((await client.call<{ txn: string }>("reimburse", { claimId: "C2", usd: 10 })).txn, "T-C2-10");
  });
});

describe("ctx.signal", () => {
  test("aborts when the caller gives up (the deadline), so a handler's own waiting ends and its slot frees", async () => {
    const host = await mesh("signal-host");
    const ended: Array<{ afterMs: number; reason: string }> = [];
    const svc = await host.serve({
      name: "signal-svc",
      version: "1.0.0",
      endpoints: {
        // Waits for an abort only: without one, it would hold its one slot for good.
        wait: {
          maxConcurrent: 1,
          handler: (_r, ctx) => new Promise((_resolve, reject) => {
            const started = Date.now();
            ctx.signal.addEventListener("abort", () => {
              ended.push({ afterMs: Date.now() - started, reason: (ctx.signal.reason as Error).name });
              reject(ctx.signal.reason);
            });
          }),
        },
        quick: { handler: (_r, ctx) => ctx.signal.aborted },
      },
    });
    const caller = await mesh("signal-caller");
    assert.equal((await codeOf(caller.call("signal-svc", "wait", undefined, { timeoutMs: 300, retry: { attempts: 1 } }))).code, "TIMEOUT");
    await waitFor("the handler's abort", () => ended.length === 1);
    assert.equal(ended[0]!.reason, "TimeoutError");
    assert.ok(ended[0]!.afterMs >= 200 && ended[0]!.afterMs < 2_000, `aborted after ${ended[0]!.afterMs} ms`);
    await waitFor("the slot to be free", () => svc.inFlight === 0);
    assert.equal(await caller.call("signal-svc", "quick"), false, "not aborted while the caller still waits");
    // Rejecting with the signal's reason is answered TIMEOUT (the caller gave up), not HANDLER_ERROR.
    const raw = await natsConnect({ servers: server.url });
    try {
      const h = natsHeaders();
      h.set("Mesh-Deadline", String(Date.now() + 300));
      const reply = await raw.request("svc.signal-svc.v1.wait", encodeBody(undefined), { timeout: 3_000, headers: h });
      assert.equal(reply.headers?.get("Mesh-Error-Code"), "TIMEOUT");
      assert.match(reply.headers?.get("Mesh-Error-Message") ?? "", /stopped at the request's deadline \(ctx\.signal\)/);
    } finally {
      await raw.close();
    }
  });
});

describe("ctx.signal's edges", () => {
  test("a deadline beyond what a timer can hold never aborts early; the signal ends with the request (AbortError)", async () => {
    const host = await mesh("signal-edge-host");
    const kept: AbortSignal[] = [];
    await host.serve({
      name: "signal-edge",
      version: "1.0.0",
      endpoints: {
        nap: {
          handler: async (_r, ctx) => {
            kept.push(ctx.signal);
            await sleep(150);
            return ctx.signal.aborted;
          },
        },
      },
    });
    const caller = await mesh("signal-edge-caller");
    // 3e9 ms (~35 days) overflowed Node's timer (fired after 1 ms); 5e9 made the getter throw.
    for (const timeoutMs of [3_000_000_000, 5_000_000_000]) {
      assert.equal(await caller.call("signal-edge", "nap", undefined, { timeoutMs }), false, `not aborted with timeoutMs ${timeoutMs}`);
    }
    assert.equal(kept.length, 2);
    for (const s of kept) {
      assert.equal(s.aborted, true, "aborted once the handler settled");
      assert.equal((s.reason as Error).name, "AbortError");
    }
  });
});

describe("nested calls", () => {
  test("inherit what is left of the parent's deadline, and a missing dependency is UNAVAILABLE, not NO_RESPONDERS", async () => {
    const host = await mesh("nest-host");
    const seen: number[] = [];
    await host.serve({ name: "nest-inner", version: "1.0.0", endpoints: { deadline: { handler: (_r, ctx) => { seen.push(ctx.deadline); return ctx.deadline; } } } });
    await host.serve({
      name: "nest-outer",
      version: "1.0.0",
      endpoints: {
        relay: { handler: async (_r, ctx) => ({ parent: ctx.deadline, child: await ctx.mesh.call<number>("nest-inner", "deadline", undefined, { timeoutMs: 60_000 }) }) },
        orphan: { handler: (_r, ctx) => ctx.mesh.call("nest-missing", "anything") },
      },
    });
    const caller = await mesh("nest-caller");
    const out = await caller.call<{ parent: number; child: number }>("nest-outer", "relay", undefined, { timeoutMs: 1234 });
    assert.equal(out.child, out.parent, "a longer own timeout cannot extend the parent's deadline");
    assert.deepEqual(seen, [out.parent]);
    const e = await codeOf(caller.call("nest-outer", "orphan"));
    assert.equal(e.code, "UNAVAILABLE");
    assert.equal((e.details as { dependency: { code: string } }).dependency.code, "NO_RESPONDERS");
    assert.equal(await caller.call("nest-outer", "relay").then(() => "ok"), "ok", "the caller still reaches nest-outer");
  });

  test("a bad timeoutMs on a nested call is BAD_REQUEST, and the inner handler never runs", async () => {
    const host = await mesh("nest-bad-host");
    let inner = 0;
    await host.serve({ name: "nest-bad-inner", version: "1.0.0", endpoints: { run: { handler: () => ++inner } } });
    await host.serve({
      name: "nest-bad-outer",
      version: "1.0.0",
      endpoints: {
        relay: {
          handler: (req, ctx) =>
            ctx.mesh.call("nest-bad-inner", "run", undefined, { timeoutMs: req as never }).then(
              () => "sent",
              (e: MeshError) => `${e.code}: ${e.message}`,
            ),
        },
      },
    });
    const caller = await mesh("nest-bad-caller");
    assert.match(await caller.call<string>("nest-bad-outer", "relay", "abc"), /^BAD_REQUEST: timeoutMs must be a positive number/);
    assert.equal(await caller.call("nest-bad-outer", "relay", 500), "sent");
    assert.equal(inner, 1, "only the good nested call ran");
  });
});

describe("load balancing and versions", () => {
  test("three instances share 300 calls fairly", async () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 3; i++) {
      const host = await mesh(`lb-host-${i}`);
      await host.serve({
        name: "lb-echo",
        version: "1.0.0",
        endpoints: { echo: { handler: (req, ctx) => { counts.set(ctx.instance, (counts.get(ctx.instance) ?? 0) + 1); return req; } } },
      });
    }
    const caller = await mesh("lb-caller");
    const replies = await Promise.all(Array.from({ length: 300 }, (_, i) => caller.call("lb-echo", "echo", { i })));
    assert.deepEqual(replies.map((r) => (r as { i: number }).i), Array.from({ length: 300 }, (_, i) => i));
    assert.equal(counts.size, 3);
    for (const [id, n] of counts) assert.ok(n >= 50 && n <= 150, `instance ${id} served ${n} of 300`);
  });

  test("v1 and v2 side by side route by target; a bare name goes to v2", async () => {
    const host = await mesh("ver-host");
    for (const version of ["1.3.0", "2.0.0", "2.1.0"]) {
      await host.serve({ name: "ver", version, endpoints: { which: { handler: (_req, ctx) => ctx.version } } });
    }
    const caller = await mesh("ver-caller");
    assert.equal(await caller.call("ver@1", "which"), "1.3.0");
    assert.equal(await caller.call("ver@^2.1", "which"), "2.1.0");
    assert.equal(await caller.call("ver@2.0.0", "which"), "2.0.0");
    const bare = new Set(await Promise.all(Array.from({ length: 40 }, () => caller.call("ver", "which"))));
    assert.deepEqual([...bare].sort(), ["2.0.0", "2.1.0"]);
    assert.equal((await codeOf(caller.call("ver@3", "which"))).code, "NOT_FOUND");
    assert.equal((await codeOf(caller.call("ver@2", "nope"))).code, "NOT_FOUND");
  });

  test("a version that starts later is found without restarting the caller", async () => {
    const caller = await mesh("late-caller");
    const host = await mesh("late-host");
    await host.serve({ name: "late", version: "1.0.0", endpoints: { which: { handler: (_r, ctx) => ctx.version } } });
    assert.equal(await caller.call("late", "which"), "1.0.0");
    assert.equal((await codeOf(caller.call("late@2", "which"))).code, "NOT_FOUND");
    await host.serve({ name: "late", version: "2.0.0", endpoints: { which: { handler: (_r, ctx) => ctx.version } } });
    await sleep(50); // the start announcement travels through the server
    assert.equal(await caller.call("late@2", "which"), "2.0.0");
    assert.equal(await caller.call("late", "which"), "2.0.0");
  });
});

describe("failures carry their codes", () => {
  let caller: Mesh;
  let raw: NatsConnection;
  let calls = 0;

  before(async () => {
    const host = await mesh("err-host");
    await host.serve({
      name: "err",
      version: "1.0.0",
      endpoints: {
        reimburse: { input: Claim, output: Txn, handler: (req) => { calls++; return { txn: req.claimId, by: "x" }; } },
        boom: { handler: () => { throw new Error("ledger is locked"); } },
        deny: { handler: () => { throw new MeshError("FORBIDDEN", "clerks only"); } },
        slow: { handler: async () => { await sleep(300); return "late"; } },
        wrongOutput: { output: Txn, handler: () => ({ txn: 42 }) as never }, // wrong on purpose
        echo: { handler: (req) => req },
        asyncBoom: { handler: async () => { await sleep(1); throw new Error("ledger went away"); } },
        // Not a Promise, but awaitable: answered with what it resolves to.
        thenable: { output: Txn, handler: () => ({ then: (resolve: (v: unknown) => void) => resolve({ txn: "T-1", by: "thenable" }) }) as never },
      },
    });
    caller = await mesh("err-caller");
    raw = await natsConnect({ servers: server.url });
  });

  after(async () => {
    await raw.close();
  });

  test("nobody listening fails fast with NO_RESPONDERS", async () => {
    const started = Date.now();
    const e = await codeOf(caller.call("ghost", "anything", {}, { timeoutMs: 5000 }));
    assert.equal(e.code, "NO_RESPONDERS");
    assert.ok(Date.now() - started < 2500, "must not wait for the timeout");
  });

  test("invalid input is BAD_REQUEST with the zod issues in details", async () => {
    const e = await codeOf(caller.call("err", "reimburse", { claimId: 7, usd: -1 }));
    assert.equal(e.code, "BAD_REQUEST");
    const issues = (e.details as { issues: { path: string[] }[] }).issues;
    assert.deepEqual(issues.map((i) => i.path.join(".")).sort(), ["claimId", "usd"]);
  });

  test("a handler that throws gives HANDLER_ERROR with its message and no stack", async () => {
    const e = await codeOf(caller.call("err", "boom"));
    assert.equal(e.code, "HANDLER_ERROR");
    assert.equal(e.message, "ledger is locked");
    assert.equal(e.details, undefined);
    assert.ok(!JSON.stringify(e).includes("at "), "no remote stack travels");
  });

  test("a handler's rejected promise is HANDLER_ERROR like a throw; a thenable's value is the answer", async () => {
    const e = await codeOf(caller.call("err", "asyncBoom"));
    assert.equal(e.code, "HANDLER_ERROR");
    assert.equal(e.message, "ledger went away");
    assert.deepEqual(await caller.call("err", "thenable"), { txn: "T-1", by: "thenable" });
  });

  test("a MeshError thrown by a handler keeps its code", async () => {
    const e = await codeOf(caller.call("err", "deny"));
    assert.equal(e.code, "FORBIDDEN");
    assert.equal(e.message, "clerks only");
  });

  test("a slow handler gives TIMEOUT", async () => {
    const e = await codeOf(caller.call("err", "slow", undefined, { timeoutMs: 100 }));
    assert.equal(e.code, "TIMEOUT");
  });

  test("output that breaks its schema is BAD_RESPONSE", async () => {
    assert.equal((await codeOf(caller.call("err", "wrongOutput"))).code, "BAD_RESPONSE");
  });

  test("an oversized payload is BAD_REQUEST and the connection survives", async () => {
    const e = await codeOf(caller.call("err", "echo", "x".repeat(2 * 1024 * 1024)));
    assert.equal(e.code, "BAD_REQUEST");
    assert.equal(await caller.call("err", "echo", "small"), "small");
  });

  test("raw garbage gets an error reply and the service keeps serving", async () => {
    const before = calls;
    const garbage = [new Uint8Array([0xc1]), new Uint8Array([0x92, 0x01]), new TextEncoder().encode("{not msgpack"), new Uint8Array([0xdc, 0xff, 0xff])];
    for (const bytes of garbage) {
      const reply = await raw.request("svc.err.v1.reimburse", bytes, { timeout: 1000 });
      assert.equal(reply.headers?.get("Mesh-Error-Code"), "BAD_REQUEST");
    }
    // valid msgpack of the wrong shape, and headers that make no sense
    const h = natsHeaders();
    h.set("Mesh-Deadline", "not-a-number");
    h.set("Mesh-Caller", "");
    const wrong = await raw.request("svc.err.v1.reimburse", encodeBody([1, 2, 3]), { timeout: 1000, headers: h });
    assert.equal(wrong.headers?.get("Mesh-Error-Code"), "BAD_REQUEST");
    assert.equal(calls, before, "the handler never saw bad input");
    const ok = await raw.request("svc.err.v1.reimburse", encodeBody({ claimId: "R1", usd: 1 }), { timeout: 1000 });
    assert.deepEqual(decodeBody(ok.data), { txn: "R1", by: "x" });
    assert.equal((await caller.call<{ txn: string }>("err", "reimburse", { claimId: "C9", usd: 3 })).txn, "C9");
  });

  test("a request whose deadline has passed is answered TIMEOUT without running the handler", async () => {
    const before = calls;
    const h = natsHeaders();
    h.set("Mesh-Deadline", String(Date.now() - 10));
    const reply = await raw.request("svc.err.v1.reimburse", encodeBody({ claimId: "L1", usd: 1 }), { timeout: 1000, headers: h });
    assert.equal(reply.headers?.get("Mesh-Error-Code"), "TIMEOUT");
    assert.equal(calls, before);
  });

  test("request metadata is read from the raw header block of real messages (the fast path)", async () => {
    const sub = raw.subscribe("wire.fastpath", { max: 2 });
    const h = natsHeaders();
    h.set("Mesh-Caller", "raw-client");
    h.set("Mesh-Deadline", "4102444800000");
    h.set("Mesh-Token", "v1.raw-client.x.1.2.U.sig");
    h.set("Mesh-Policy", "7");
    h.set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    h.set("tracestate", "vendor=abc");
    raw.publish("wire.fastpath", encodeBody(1), { headers: h });
    raw.publish("wire.fastpath", encodeBody(2));
    const got = [];
    for await (const m of sub) got.push(m);
    assert.ok(rawHeaderBlock(got[0]!) instanceof Uint8Array, "nats.js internals changed: update rawHeaderBlock");
    assert.deepEqual({ ...readRequestMeta(got[0]!, 0, 1000) }, {
      caller: "raw-client", deadline: 4102444800000, requestId: "", token: "v1.raw-client.x.1.2.U.sig", policy: "7",
      traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tracestate: "vendor=abc",
    });
    assert.equal(rawHeaderBlock(got[1]!), undefined);
    assert.deepEqual({ ...readRequestMeta(got[1]!, 5, 1000) }, { caller: "", deadline: 1005, requestId: "", token: "", policy: "", traceparent: "", tracestate: "" });
  });

  test("an unknown endpoint on the exact-version lane is NOT_FOUND", async () => {
    const reply = await raw.request("svc.err.1_0_0.nope", encodeBody({}), { timeout: 1000 });
    assert.equal(reply.headers?.get("Mesh-Error-Code"), "NOT_FOUND");
  });

  test("bad call arguments fail as BAD_REQUEST without throwing synchronously", async () => {
    assert.equal((await codeOf(caller.call("Not A Name", "x"))).code, "BAD_REQUEST");
    assert.equal((await codeOf(caller.call("err", "echo", 1, { timeoutMs: -5 }))).code, "BAD_REQUEST");
    assert.equal((await codeOf(caller.call("err", "echo", () => 1))).code, "BAD_REQUEST");
  });

  test("a timeoutMs that is not a positive finite number is BAD_REQUEST, and nothing is sent", async () => {
    const before = calls;
    for (const timeoutMs of ["100", "1e2", true, Infinity, NaN, 0]) {
      const e = await codeOf(caller.call("err", "reimburse", { claimId: "T1", usd: 1 }, { timeoutMs: timeoutMs as number }));
      assert.equal(e.code, "BAD_REQUEST", String(timeoutMs));
      assert.match(e.message, /^timeoutMs must be a positive number/);
    }
    await caller.call("err", "reimburse", { claimId: "T2", usd: 1 }); // after any stray request, in order
    assert.equal(calls, before + 1, "only the good call reached the handler");
  });

  test("a deadline that is not a finite number is BAD_REQUEST naming it, and nothing is sent", async () => {
    const before = calls;
    for (const deadline of [NaN, "x", {}, Infinity, String(Date.now() + 5000)]) {
      const e = await codeOf(caller.call("err", "reimburse", { claimId: "D1", usd: 1 }, { deadline: deadline as number }));
      assert.equal(e.code, "BAD_REQUEST", String(deadline));
      assert.match(e.message, /^deadline must be a finite number/);
    }
    await caller.call("err", "reimburse", { claimId: "D2", usd: 1 }, { deadline: Date.now() + 1000 });
    assert.equal(calls, before + 1, "only the good call reached the handler");
  });

  test("a signal that is not an AbortSignal is BAD_REQUEST, and nothing is sent", async () => {
    const before = calls;
    for (const signal of [{}, { aborted: false, addEventListener() {} }, "abort"]) {
      const e = await codeOf(caller.call("err", "reimburse", { claimId: "S1", usd: 1 }, { signal: signal as never }));
      assert.equal(e.code, "BAD_REQUEST");
      assert.match(e.message, /^signal must be an AbortSignal/);
    }
    await caller.call("err", "reimburse", { claimId: "S2", usd: 1 }, { signal: new AbortController().signal });
    assert.equal(calls, before + 1, "only the good call reached the handler");
  });

  test("per-call retry settings are checked like connect()'s: BAD_REQUEST with the path, nothing sent", async () => {
    const before = calls;
    const cases: [unknown, RegExp][] = [
      [{ attempts: 0 }, /retry\.attempts: /],
      [{ attempts: 100_000, backoffMs: 0 }, /retry\.attempts: /],
      [{ backoffMs: NaN }, /retry\.backoffMs: /],
      [{ attemps: 3 }, /retry: .*"attemps"/],
      ["yes", /retry: /],
    ];
    for (const [retry, path] of cases) {
      const e = await codeOf(caller.call("err", "reimburse", { claimId: "R1", usd: 1 }, { retry: retry as never }));
      assert.equal(e.code, "BAD_REQUEST", JSON.stringify(retry));
      assert.match(e.message, path);
    }
    await caller.call("err", "reimburse", { claimId: "R2", usd: 1 }, { retry: { attempts: 3, backoffMs: 0 } });
    assert.equal(calls, before + 1, "only the good call reached the handler");
  });

  test("an endpoint that is not a string is BAD_REQUEST, from a bound client too", async () => {
    const client = caller.client("err");
    for (const endpoint of [undefined, 42, null, ["echo"]]) {
      for (const call of [() => caller.call("err", endpoint as never), () => client.call(endpoint as never)]) {
        const e = await codeOf(call());
        assert.equal(e.code, "BAD_REQUEST", String(endpoint));
        assert.match(e.message, /^endpoint must be a string/);
      }
    }
  });

  test("a cancelled call rejects at once", async () => {
    const ac = new AbortController();
    const p = caller.call("err", "slow", undefined, { signal: ac.signal, timeoutMs: 5000 });
    ac.abort();
    const e = await codeOf(p);
    assert.equal(e.retryable, false);
  });
});

describe("serve() refuses bad definitions", () => {
  test("names, versions, endpoints and schemas are checked", async () => {
    const host = await mesh("bad-serve");
    const bad = [
      { name: "Bad Name", version: "1.0.0", endpoints: { a: { handler: () => 1 } } },
      { name: "events", version: "1.0.0", endpoints: { a: { handler: () => 1 } } },
      { name: "ok", version: "one", endpoints: { a: { handler: () => 1 } } },
      { name: "ok", version: "1.0.0", endpoints: {} },
      { name: "ok", version: "1.0.0", endpoints: { "a.b": { handler: () => 1 } } },
      { name: "ok", version: "1.0.0", endpoints: { a: {} } },
      { name: "ok", version: "1.0.0", endpoints: { a: { input: { not: "zod" }, handler: () => 1 } } },
    ];
    for (const spec of bad) {
      const e = await codeOf(host.serve(spec as never));
      assert.equal(e.code, "BAD_REQUEST", JSON.stringify(spec));
    }
  });
});

describe("graceful stop", () => {
  test("stop() during in-flight calls loses none of them", async () => {
    const host = await mesh("drain-host");
    let started = 0;
    const svc = await host.serve({
      name: "drain",
      version: "1.0.0",
      endpoints: { work: { input: z.number(), handler: async (req) => { started++; await sleep(200); return req * 2; } } },
    });
    const caller = await mesh("drain-caller");
    const calls = Array.from({ length: 20 }, (_, i) => caller.call<number>("drain", "work", i, { timeoutMs: 3000 }));
    const until = Date.now() + 2000;
    while (started < 20 && Date.now() < until) await sleep(5);
    assert.equal(started, 20, "all requests reached the handler before stop");
    await svc.stop();
    assert.equal(svc.inFlight, 0);
    assert.deepEqual(await Promise.all(calls), Array.from({ length: 20 }, (_, i) => i * 2));
    assert.equal((await codeOf(caller.call("drain", "work", 1, { timeoutMs: 500 }))).code, "NO_RESPONDERS");
  });
});

describe("discovery", () => {
  test("the stock nats.js services client sees instances, versions, endpoints and JSON Schemas", async () => {
    const host = await mesh("disc-host");
    await host.serve({ name: "disc", version: "2.1.0", description: "reimbursements", endpoints: { reimburse: { input: Claim, output: Txn, handler: () => ({ txn: "t", by: "b" }) } } });
    await host.serve({ name: "disc", version: "2.1.0", endpoints: { reimburse: { input: Claim, output: Txn, handler: () => ({ txn: "t", by: "b" }) } } });
    const nc = await natsConnect({ servers: server.url });
    try {
      const client = nc.services.client();
      const infos = [];
      for await (const info of await client.info("disc")) infos.push(info);
      assert.equal(infos.length, 2);
      for (const info of infos) {
        assert.equal(info.version, "2.1.0");
        const ep = info.endpoints.find((e) => e.name === "reimburse")!;
        assert.equal(ep.subject, "svc.disc.v2.reimburse");
        assert.equal(ep.queue_group, "svc-disc-v2");
        const schema = JSON.parse(ep.metadata!["input_schema"]!);
        assert.equal(schema.type, "object");
        assert.deepEqual(Object.keys(schema.properties).sort(), ["claimId", "usd"]);
        assert.deepEqual(schema.required.sort(), ["claimId", "usd"]);
      }
      const pings = [];
      for await (const p of await client.ping("disc")) pings.push(p);
      assert.equal(pings.length, 2);
      await host.call("disc", "reimburse", { claimId: "a", usd: 1 });
      let served = 0;
      for await (const s of await client.stats("disc")) served += s.endpoints!.reduce((n, e) => n + e.num_requests, 0);
      assert.equal(served, 1);
    } finally {
      await nc.close();
    }
  });
});
