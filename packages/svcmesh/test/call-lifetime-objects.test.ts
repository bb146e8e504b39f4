// Objects that live as long as a call are class instances, never object literals. V8
// tracks a literal's allocation site: when most of its objects outlive a minor GC (as a
// call's context does with 256 calls in flight), it may decide to make every later one
// in old space, which only full GCs free. Caller processes that drew that decision
// stayed ~1.4x dearer per call for their whole life (bench/RESULTS.md, 2026-12-06).
// Instances of a class have no allocation site. Checked on a real call: the context the
// pipeline sees, the frame it is sent in, and the metadata the callee reads.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Msg, connect as natsConnect, type NatsConnection } from "nats";
import { type CallContext, hpubFrame, readRequestMeta } from "svcmesh/internal";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { meshPool } from "../../../test/helpers/mesh.ts";
import { standaloneCaller } from "./fixtures/standalone-caller.ts";

let server: NatsServer;
let nc: NatsConnection;
const pool = meshPool(() => server.url);

before(async () => {
  server = await startNatsServer();
  nc = await natsConnect({ servers: server.url });
});

after(async () => {
  await pool.closeAll();
  await nc?.close();
  await server?.stop();
});

function assertClassInstance(value: unknown, what: string): void {
  assert.ok(value !== null && typeof value === "object", `${what} is an object`);
  assert.notEqual(Object.getPrototypeOf(value), Object.prototype, `${what} must be a class instance, not an object literal`);
}

test("a call's context, its request frame and the callee's request metadata are class instances", async () => {
  const host = await pool.open("lifetime-host");
  await host.serve({ name: "lifetime", version: "1.0.0", endpoints: { echo: { handler: async (x: unknown) => x } } });
  // The callee's side: what readRequestMeta makes of a request the caller really sent.
  const requests: Msg[] = [];
  nc.subscribe("svc.lifetime.v1.echo", { callback: (_e, m) => requests.push(m) });
  await nc.flush();

  const seen: CallContext[] = [];
  const { caller, close } = standaloneCaller(nc, "lifetime-caller", [(ctx, next) => (seen.push(ctx), next(ctx))]);
  try {
    assert.deepEqual(await caller.call("lifetime", "echo", { n: 1 }, { timeoutMs: 5_000 }), { n: 1 });
    assert.equal(seen.length, 1);
    assertClassInstance(seen[0], "the call context");
    assert.equal(seen[0]!.attempt, 0, "fields a class declares start as the literal's did");
    assert.equal(seen[0]!.traceLines, "");
    assert.ok(requests.length >= 1, "the spy saw the request");
    const meta = readRequestMeta(requests[0]!, Date.now(), 1_000);
    assertClassInstance(meta, "the request metadata");
    assert.equal(meta.caller, "lifetime-caller");
    assertClassInstance(hpubFrame("svc.lifetime.v1.echo", "_INBOX.x.1", new Uint8Array(0), "\r\n", new Uint8Array(1)), "a frame");
  } finally {
    close();
  }
});
