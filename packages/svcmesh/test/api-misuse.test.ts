// Misuse of the public API, against a real nats-server: each bad argument is a clear
// MeshError before anything is sent or subscribed, nothing is silently changed or left
// running, and the mesh keeps working afterwards.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { applyPolicy, connect, getPolicy, type Mesh, MeshError, newIdentity, parsePolicy } from "svcmesh";
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

describe("connect() checks every option before dialling", () => {
  // A closed port: an option that slipped through would fail UNAVAILABLE instead.
  const nowhere = "nats://127.0.0.1:1";
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ["an empty servers string", { servers: "" }, /servers: must be a server URL/],
    ["an empty servers list", { servers: [] }, /servers: must be a server URL/],
    ["servers as a number", { servers: 14997 }, /servers: must be a server URL/],
    ["an unknown log level", { servers: nowhere, logLevel: "loud" }, /logLevel/],
    ["a logger that is not one", { servers: nowhere, logger: {} }, /logger: must be a pino logger/],
    ["audit.enabled as a string", { servers: nowhere, audit: { enabled: "no" } }, /audit\.enabled/],
    ["policy.waitMs NaN", { servers: nowhere, policy: { waitMs: Number.NaN } }, /policy\.waitMs/],
    ["trace: true", { servers: nowhere, trace: true }, /trace: must be false \(off\) or an options object/],
    ["a negative trace buffer", { servers: nowhere, trace: { maxBuffered: -5 } }, /trace\.maxBuffered/],
    ["a negative discovery ttl", { servers: nowhere, discovery: { ttlMs: -1 } }, /discovery\.ttlMs/],
    ["events as a string", { servers: nowhere, events: "on" }, /events/],
    ["an unknown option (timeoutMs belongs in defaults)", { servers: nowhere, timeoutMs: 100 }, /timeoutMs/],
    ["a seed with a name no identity can have", { servers: nowhere, seed: newIdentity().seed, name: "Claims" }, /identity name "Claims" is not valid/],
  ];
  for (const [what, extra, message] of cases) {
    test(`${what}: BAD_REQUEST naming it`, async () => {
      const e = await meshFailure(connect({ name: "misuse", ...extra } as never));
      assert.equal(e.code, "BAD_REQUEST", e.message);
      assert.match(e.message, message);
    });
  }

  test("a malformed server URL is BAD_REQUEST; TLS asked of a server without it says so", async () => {
    const url = await meshFailure(connect({ name: "misuse", servers: "not a url::" }));
    assert.equal(url.code, "BAD_REQUEST");
    assert.match(url.message, /not a server URL/);
    const tls = await meshFailure(connect({ name: "misuse", servers: server.url, tls: {} }));
    assert.equal(tls.code, "UNAVAILABLE");
    assert.match(tls.message, /TLS was asked for .* but the server does not offer TLS/);
  });

  test("a process whose connect() failed can exit: no connection is left open", () => {
    const script = `import { connect } from "svcmesh";
      try { await connect({ servers: ${JSON.stringify(server.url)}, name: "Claims", seed: ${JSON.stringify(newIdentity().seed)} }); }
      catch (e) { console.log(e.code); }`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: import.meta.dirname, encoding: "utf8", timeout: 10_000 });
    assert.equal(r.signal, null, "it exited by itself, within 10 s");
    assert.equal(r.stdout.trim(), "BAD_REQUEST", r.stderr);
  });
});

describe("serve()", () => {
  test("a version with spaces is BAD_REQUEST before anything is subscribed, and the connection keeps serving", async () => {
    const host = await pool.open("misuse-version-host");
    await host.serve({ name: "steady", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    for (const version of [" 1.0.0 ", "1.0.0\n", "\t1.0.0", "=1.0.0"]) {
      const e = await meshFailure(host.serve({ name: "spaced", version, endpoints: { ping: { handler: () => "pong" } } }));
      assert.equal(e.code, "BAD_REQUEST", version);
    }
    const caller = await pool.open("misuse-version-caller");
    await sleep(300); // a refused subscription would have dropped the connection by now
    assert.equal(await host.call("steady", "ping"), "pong");
    assert.equal(await caller.call("steady", "ping"), "pong");
  });

  test("serve() racing close(): it fails UNAVAILABLE and nothing stays served", async () => {
    const host = await connect({ servers: server.url, name: "misuse-race-host", logLevel: "silent" });
    const serving = host.serve({ name: "raced", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    const closing = host.close();
    const e = await meshFailure(serving);
    assert.equal(e.code, "UNAVAILABLE");
    await closing;
    const caller = await pool.open("misuse-race-caller");
    assert.equal((await meshFailure(caller.call("raced", "ping", undefined, { timeoutMs: 500, retry: { attempts: 1 } }))).code, "NO_RESPONDERS");
  });

  test("stop() waits for a handler that never settles only until its request's deadline", async () => {
    const lines: Array<{ level: number; msg: string; abandoned?: number }> = [];
    const logger = pino({ level: "warn" }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const host = await connect({ servers: server.url, name: "misuse-stuck-host", logger });
    const svc = await host.serve({ name: "stuck", version: "1.0.0", endpoints: { hang: { handler: () => new Promise(() => undefined) } } });
    const caller = await pool.open("misuse-stuck-caller");
    const e = await meshFailure(caller.call("stuck", "hang", undefined, { timeoutMs: 300, retry: { attempts: 1 } }));
    assert.equal(e.code, "TIMEOUT");
    assert.equal(svc.inFlight, 1);
    const t0 = Date.now();
    await svc.stop();
    assert.ok(Date.now() - t0 < 2_000, `stop() took ${Date.now() - t0} ms`);
    assert.equal(await svc.stopped, undefined, "stopped on purpose: no error");
    const said = lines.find((l) => l.abandoned === 1);
    assert.ok(said && /still running past their requests' deadlines/.test(said.msg), JSON.stringify(lines));
    await host.close();
  });
});

describe("values msgpack would change are refused, not sent", () => {
  let ran = 0;
  let caller: Mesh;
  before(async () => {
    const host = await pool.open("misuse-values-host");
    await host.serve({
      name: "values",
      version: "1.0.0",
      endpoints: {
        take: { handler: (input) => ((ran++), input) },
        give: { input: z.string(), handler: (kind) => (kind === "map" ? new Map([["a", 1]]) : kind === "set" ? new Set([1]) : new Float32Array([1.5])) },
      },
    });
    caller = await pool.open("misuse-values-caller");
  });

  test("a Map, Set or non-byte typed array as a payload: BAD_REQUEST saying what to send, and the handler never runs", async () => {
    for (const [payload, name] of [[new Map([["alice", 10]]), /a Map would arrive as an empty object/], [{ nested: [new Set([1])] }, /a Set/], [new Float64Array([1.5]), /a Float64Array would arrive as raw bytes/]] as const) {
      const e = await meshFailure(caller.call("values", "take", payload));
      assert.equal(e.code, "BAD_REQUEST");
      assert.match(e.message, name);
    }
    assert.equal(ran, 0);
    assert.deepEqual(await caller.call("values", "take", { bytes: new Uint8Array([1, 2]), at: new Date(0) }), { bytes: Buffer.from([1, 2]), at: new Date(0) });
  });

  test("a handler returning one: BAD_RESPONSE at once", async () => {
    for (const kind of ["map", "set", "floats"]) {
      const e = await meshFailure(caller.call("values", "give", kind));
      assert.equal(e.code, "BAD_RESPONSE", kind);
    }
  });
});

describe("handlers throwing odd errors", () => {
  test("a MeshError-like value without a message or a known code: HANDLER_ERROR at once, not a silent timeout", async () => {
    const host = await pool.open("misuse-brand-host");
    const brand = Symbol.for("svcmesh.MeshError");
    await host.serve({
      name: "branded",
      version: "1.0.0",
      endpoints: {
        nomessage: { handler: () => { throw { [brand]: true, code: "BAD_REQUEST" }; } },
        badcode: { handler: () => { throw { [brand]: true, code: "NOPE\r\nMesh-Origin: x", message: "odd" }; } },
      },
    });
    assert.ok(new MeshError("BAD_REQUEST", "x")[brand as never], "the brand the test forges is MeshError's");
    const caller = await pool.open("misuse-brand-caller");
    const t0 = Date.now();
    for (const ep of ["nomessage", "badcode"]) {
      const e = await meshFailure(caller.call("branded", ep, undefined, { timeoutMs: 3_000 }));
      assert.equal(e.code, "HANDLER_ERROR", `${ep}: ${e.message}`);
    }
    assert.ok(Date.now() - t0 < 1_500, "answered, not timed out");
  });
});

describe("schemas that throw instead of checking, and calls after close", () => {
  test("an output schema whose transform throws is BAD_RESPONSE, an async refine on input HANDLER_ERROR, each naming the schema", async () => {
    const host = await pool.open("misuse-schema-host");
    await host.serve({
      name: "schemas",
      version: "1.0.0",
      endpoints: {
        out: { output: z.string().transform(() => { throw new Error("boom in transform"); }), handler: () => "x" },
        in: { input: z.string().refine(async () => true), handler: () => "x" },
      },
    });
    const caller = await pool.open("misuse-schema-caller");
    const out = await meshFailure(caller.call("schemas", "out"));
    assert.equal(out.code, "BAD_RESPONSE");
    assert.match(out.message, /output schema threw instead of checking: boom in transform/);
    const input = await meshFailure(caller.call("schemas", "in", "x"));
    assert.equal(input.code, "HANDLER_ERROR");
    assert.match(input.message, /input schema threw/);
  });

  test("call options that are not an object, or a fallback that could never match as meant: BAD_REQUEST, nothing sent", async () => {
    const host = await pool.open("misuse-opts-host");
    let ran = 0;
    await host.serve({ name: "opts", version: "1.0.0", endpoints: { ping: { handler: () => ++ran } } });
    const caller = await pool.open("misuse-opts-caller");
    const cases: Array<[unknown, RegExp]> = [
      ["fast", /call options must be an object/],
      [{ fallback: { codes: "TIMEOUT", value: 1 } }, /fallback must be/],
      [{ fallback: { codes: ["TIMEOUTS"], value: 1 } }, /fallback must be/],
      [{ fallback: { codes: ["TIMEOUT"], compute: "x" } }, /fallback.compute must be a function/],
    ];
    for (const [opts, message] of cases) {
      const e = await meshFailure(caller.call("opts", "ping", undefined, opts as never));
      assert.equal(e.code, "BAD_REQUEST");
      assert.match(e.message, message);
    }
    assert.equal(ran, 0);
    assert.equal(await caller.call("opts", "ping", undefined, { fallback: { codes: ["TIMEOUT"], value: 0 } }), 1);
  });

  test("while close() drains, a handler still running can make its own calls", async () => {
    const downstream = await pool.open("misuse-drain-down");
    await downstream.serve({ name: "drain-down", version: "1.0.0", endpoints: { pay: { handler: () => "paid" } } });
    const mid = await connect({ servers: server.url, name: "misuse-drain-mid", logLevel: "silent" });
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    await mid.serve({
      name: "drain-mid",
      version: "1.0.0",
      endpoints: { claim: { handler: async (_: unknown, ctx) => { started(); await sleep(300); return ctx.mesh.call("drain-down", "pay"); } } },
    });
    const caller = await pool.open("misuse-drain-caller");
    await caller.call("drain-down", "pay"); // discovery warm in mid as well:
    await mid.call("drain-down", "pay");
    const claim = caller.call("drain-mid", "claim", undefined, { timeoutMs: 5_000 });
    await running;
    const closing = mid.close();
    assert.equal(await claim, "paid");
    await closing;
  });

  test("a call after close() is UNAVAILABLE, whatever the target", async () => {
    const m = await connect({ servers: server.url, name: "misuse-closed", logLevel: "silent" });
    await m.close();
    for (const target of ["ghost", "steady"]) {
      const e = await meshFailure(m.call(target, "ping"));
      assert.equal(e.code, "UNAVAILABLE", e.message);
      assert.match(e.message, /mesh connection is closed/);
    }
  });

  test("policy functions given the wrong arguments: BAD_REQUEST or an error list, not a TypeError", async () => {
    const m = await pool.open("misuse-policy");
    const cases: Array<[Promise<unknown>, RegExp]> = [
      [applyPolicy(undefined as never, "version: 1\n", { by: "t" }), /first argument must be a NATS connection/],
      [applyPolicy(m as never, "version: 1\n", { by: "t" }), /first argument must be a NATS connection/],
      [applyPolicy(m.nc, "version: 1\n", undefined as never), /options.by/],
      [applyPolicy(m.nc, "version: 1\n", { by: "t", ifRevision: -1 }), /ifRevision must be a whole number ≥ 0/],
      [applyPolicy(m.nc, "version: 1\n", { by: "t", ifRevision: "x" as never }), /ifRevision/],
      [getPolicy(undefined as never), /first argument must be a NATS connection/],
    ];
    for (const [p, message] of cases) {
      const e = await meshFailure(p);
      assert.equal(e.code, "BAD_REQUEST");
      assert.match(e.message, message);
    }
    const parsed = parsePolicy(undefined as never);
    assert.equal(parsed.ok, false);
  });
});

describe("mesh.events", () => {
  test("consume() with services or types as a string: BAD_REQUEST, not a durable that acks every event away", async () => {
    const m = await pool.open("misuse-events");
    const handler = () => undefined;
    for (const [options, message] of [[{ durable: "d1", services: "payments" }, /services must be an array/], [{ durable: "d2", types: "circuit_open" }, /types must be an array/]] as const) {
      const e = await meshFailure(m.events.consume(options as never, handler));
      assert.equal(e.code, "BAD_REQUEST");
      assert.match(e.message, message);
    }
  });

  test("publishEncoded() to a malformed subject is BAD_REQUEST, and the connection stays up; emit(null) and count() with nothing do not throw", async () => {
    const m = await pool.open("misuse-publish");
    await m.serve({ name: "still-up", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    for (const subject of ["svc.events.bad subject", "svc.events.x", "elsewhere.a.b", "svc.events.a.b.c"]) {
      assert.throws(() => m.events.publishEncoded(subject, new Uint8Array([0x80])), (e: unknown) => e instanceof MeshError && e.code === "BAD_REQUEST", subject);
    }
    assert.doesNotThrow(() => m.events.emit(null as never));
    assert.doesNotThrow(() => (m.events.count as (...a: unknown[]) => void)());
    await sleep(300);
    assert.equal(m.nc.isClosed(), false);
    assert.equal(await (await pool.open("misuse-publish-caller")).call("still-up", "ping"), "pong");
  });
});

describe("a caller that calls many distinct targets", () => {
  test("keeps bounded per-target state: discovery views, settings, header lines, breakers", async () => {
    const m = await connect({ servers: server.url, name: "misuse-many-targets", logLevel: "silent", audit: { enabled: false }, trace: false, policy: { watch: false } });
    try {
      const targets = Array.from({ length: 1_300 }, (_, i) => `nobody-${i}`);
      for (let i = 0; i < targets.length; i += 10) {
        await Promise.all(targets.slice(i, i + 10).map((t) => m.call(t, "x", undefined, { retry: { attempts: 1 } }).catch(() => undefined)));
      }
      const inside = m as unknown as { registry: { views: Map<string, unknown> }; settingsByService: Map<string, unknown>; breaker: { state(key: string): string | undefined } };
      assert.ok(inside.registry.views.size <= 1_024, `${inside.registry.views.size} discovery views`);
      assert.ok(inside.settingsByService.size <= 1_024, `${inside.settingsByService.size} settings`);
      assert.equal(inside.breaker.state("nobody-0"), undefined, "the oldest breaker was let go");
      assert.equal(inside.breaker.state("nobody-1299"), "closed");
    } finally {
      await m.close();
    }
  });
});

describe("a call to an endpoint the route does not have", () => {
  test("fails NOT_FOUND without touching the breaker: a half-open breaker still waits for a real probe", async () => {
    const host = await pool.open("misuse-probe-host");
    let hits = 0;
    await host.serve({ name: "probed", version: "1.0.0", endpoints: { boom: { handler: () => { hits++; throw new Error("down"); } } } });
    const caller = await connect({
      servers: server.url, name: "misuse-probe-caller", logLevel: "silent",
      defaults: { retry: { attempts: 1 }, breaker: { volumeThreshold: 2, resetTimeoutMs: 400 } },
    });
    try {
      for (let i = 0; i < 2; i++) await meshFailure(caller.call("probed", "boom"));
      assert.equal((await meshFailure(caller.call("probed", "boom"))).code, "CIRCUIT_OPEN");
      await sleep(600); // half-open now
      const breaker = (caller as unknown as { breaker: { state(key: string): string | undefined } }).breaker;
      assert.equal((await meshFailure(caller.call("probed", "boomm"))).code, "NOT_FOUND");
      assert.equal(breaker.state("probed.v1"), "half_open", "the typo did not count as the probe's answer");
      hits = 0;
      assert.equal((await meshFailure(caller.call("probed", "boom"))).code, "HANDLER_ERROR", "the probe");
      assert.equal((await meshFailure(caller.call("probed", "boom"))).code, "CIRCUIT_OPEN", "the failed probe opened it again");
      assert.equal(hits, 1);
    } finally {
      await caller.close();
    }
  });
});
