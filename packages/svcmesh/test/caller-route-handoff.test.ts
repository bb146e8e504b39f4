// Caller hands the route call() has just checked to the first attempt's send() instead
// of looking it up again (a per-service lookup is a cache miss per call for callers
// that spread their calls over many services). Checked here: the hand-off happens, and
// it never sends a call on another call's route, however the pipeline defers.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect as natsConnect, type NatsConnection } from "nats";
import type { Interceptor } from "svcmesh/internal";
import type { Caller } from "../src/client/caller.ts";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { meshPool } from "../../../test/helpers/mesh.ts";
import { standaloneCaller } from "./fixtures/standalone-caller.ts";

let server: NatsServer;
let nc: NatsConnection;
const pool = meshPool(() => server.url);

before(async () => {
  server = await startNatsServer();
  nc = await natsConnect({ servers: server.url });
  const host = await pool.open("handoff-host");
  // Two services with the same endpoint: a call sent on the other's route would be
  // answered, by the wrong one.
  for (const name of ["alpha", "beta"]) {
    await host.serve({ name, version: "1.0.0", endpoints: { who: { handler: async () => ({ name }) } } });
  }
});

after(async () => {
  await pool.closeAll();
  await nc?.close();
  await server?.stop();
});

/** A standalone Caller whose registry counts its lookups of a route (`peeks`). */
function callerWith(interceptors: Interceptor[]): { caller: Caller; peeks: () => number; close(): void } {
  const { caller, registry, close } = standaloneCaller(nc, "handoff-caller", interceptors);
  let peeks = 0;
  const peek = registry.peek.bind(registry);
  registry.peek = (service, now) => (peeks++, peek(service, now));
  return { caller, peeks: () => peeks, close };
}

test("a call with a known route looks it up once, not again to send it", async () => {
  const { caller, peeks, close } = callerWith([(ctx, next) => next(ctx)]);
  try {
    assert.deepEqual(await caller.call("alpha", "who", {}, { timeoutMs: 5_000 }), { name: "alpha" }); // discovers alpha
    const before = peeks();
    assert.deepEqual(await caller.call("alpha", "who", {}, { timeoutMs: 5_000 }), { name: "alpha" });
    assert.equal(peeks() - before, 1, "one lookup in call(), none in send()");
  } finally {
    close();
  }
});

test("calls whose pipeline defers the send still go each on its own route", async () => {
  // An interceptor that sends later, after other calls have started: the hand-off must
  // not give a call the route of the call that started last.
  const deferring: Interceptor = (ctx, next) => new Promise((resolve) => setTimeout(resolve, 5)).then(() => next(ctx));
  const { caller, peeks, close } = callerWith([deferring]);
  try {
    await Promise.all([caller.call("alpha", "who", {}, { timeoutMs: 5_000 }), caller.call("beta", "who", {}, { timeoutMs: 5_000 })]);
    const before = peeks();
    const targets = ["alpha", "beta", "beta", "alpha", "beta", "alpha", "alpha", "beta"];
    const answers = await Promise.all(targets.map((t) => caller.call(t, "who", {}, { timeoutMs: 5_000 })));
    assert.deepEqual(answers, targets.map((name) => ({ name })));
    // Deferred, the first attempt looks its route up again: one lookup in call(), one in send().
    assert.equal(peeks() - before, 2 * targets.length);
  } finally {
    close();
  }
});
