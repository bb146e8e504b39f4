// The transport across a NATS restart (client/transport.ts): nats.js drops what is
// published while it reconnects, so calls made while the connection is down are held
// and sent once it is back, idempotent calls in flight are sent again with the same
// request id, and a held call that reaches its deadline fails UNAVAILABLE, never sent.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { connect, type Mesh } from "svcmesh";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
let callee: Mesh;
let caller: Mesh;
/** Request ids each endpoint's handler saw, in order. */
const seen: Record<string, string[]> = { put: [], charge: [], now: [] };
let gate: (() => void) | undefined;
const gated = () => new Promise<void>((resolve) => { gate = resolve; });

before(async () => {
  server = await startNatsServer();
  const options = { servers: server.url, logLevel: "silent" as const, audit: { enabled: false }, trace: false as const, policy: { watch: false } };
  callee = await connect({ ...options, name: "ledger" });
  await callee.serve({
    name: "ledger",
    version: "1.0.0",
    endpoints: {
      now: { handler: (_: unknown, ctx) => { seen.now!.push(ctx.requestId); return "ok"; } },
      put: { idempotent: true, handler: async (_: unknown, ctx) => { seen.put!.push(ctx.requestId); await gated(); return "put"; } },
      charge: { handler: async (_: unknown, ctx) => { seen.charge!.push(ctx.requestId); await gated(); return "charged"; } },
    },
  });
  // Retries as users have them: after a whole-server restart the caller may be back before
  // the callee has subscribed again, and NO_RESPONDERS is retried until it has.
  caller = await connect({ ...options, name: "teller", defaults: { retry: { attempts: 10, backoffMs: 200, maxBackoffMs: 400 }, breaker: { enabled: false } } });
  assert.equal(await caller.call("ledger", "now", {}), "ok"); // discovery done while NATS is up
});

after(async () => {
  gate?.();
  await Promise.allSettled([caller?.close(), callee?.close()]);
  await server.stop();
});

/** Stops NATS for `downMs` (several reconnect attempts, each of which empties nats.js's outbound buffer), then starts it again. */
async function outage(downMs: number, during: () => void): Promise<void> {
  await server.stop();
  await sleep(200); // both connections have seen the socket close
  during();
  await sleep(downMs);
  await server.restart();
}

test("a call made while NATS is down is held and sent after the reconnect", async () => {
  let call: Promise<unknown> | undefined;
  await outage(1_500, () => {
    call = caller.call("ledger", "now", {}, { timeoutMs: 10_000 });
  });
  assert.equal(await call, "ok");
});

test("a held call whose deadline passes while NATS is down fails UNAVAILABLE, marked never sent", async () => {
  let failure: ReturnType<typeof meshFailure> | undefined;
  const before = seen.now!.length;
  await outage(1_500, () => {
    failure = meshFailure(caller.call("ledger", "now", {}, { timeoutMs: 500 }));
  });
  const e = await failure!;
  assert.equal(e.code, "UNAVAILABLE");
  assert.equal((e.details as { neverSent?: boolean }).neverSent, true);
  await sleep(500);
  assert.equal(seen.now!.length, before, "the handler never ran: the call was not sent later");
});

test("in flight at the disconnect: an idempotent call is sent again with its request id, a non-idempotent one is not", async () => {
  for (const [endpoint, idempotent] of [["put", true], ["charge", false]] as const) {
    // Long enough to outlast the outage; the non-idempotent one may end at its deadline.
    const call = caller.call("ledger", endpoint, {}, { timeoutMs: idempotent ? 10_000 : 4_000 });
    call.catch(() => undefined); // judged below
    const deadline = Date.now() + 5_000;
    while (seen[endpoint]!.length === 0 && Date.now() < deadline) await sleep(10);
    assert.equal(seen[endpoint]!.length, 1, `${endpoint} reached its handler`);
    await outage(1_000, () => undefined);
    // After the reconnect: an idempotent call's request arrives again; let both runs finish.
    const settleBy = Date.now() + 3_000;
    while (idempotent && seen[endpoint]!.length < 2 && Date.now() < settleBy) await sleep(20);
    gate?.();
    await sleep(50);
    gate?.();
    const ids = seen[endpoint]!;
    if (idempotent) {
      assert.equal(ids.length, 2, "sent again after the reconnect");
      assert.equal(ids[0], ids[1], "with the same request id (the callee's audit stores it once)");
      assert.equal(await call, "put");
    } else {
      assert.equal(ids.length, 1, "never sent twice");
      // Its reply may or may not survive the outage: either it arrives, or the call fails with a code at its deadline.
      const outcome = await call.then((v) => v, (e: { code?: string }) => e.code);
      assert.ok(outcome === "charged" || outcome === "TIMEOUT", String(outcome));
    }
  }
});

test("close() while NATS is down closes the connection, and the process can exit", async () => {
  const down = await startNatsServer({ jetstream: true });
  // A service process: it serves, holds a consumer, then closes when told, NATS gone.
  const script = `import { connect } from "svcmesh";
    const m = await connect({ servers: ${JSON.stringify(down.url)}, name: "leaving", logLevel: "silent" });
    await m.serve({ name: "leaving", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    await m.events.consume({ durable: "leaving" }, () => undefined);
    console.log("ready");
    process.stdin.once("data", async () => {
      await m.close();
      console.log("closed " + m.nc.isClosed());
      process.stdin.destroy();
    });`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: import.meta.dirname, stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    for (let i = 0; i < 200 && !out.includes("ready"); i++) await sleep(50);
    assert.ok(out.includes("ready"), out);
    await down.stop();
    await sleep(300);
    child.stdin.write("go\n");
    const code = await Promise.race([exited, sleep(25_000).then(() => "still running" as const)]);
    assert.equal(code, 0, `the process exited by itself (output: ${out})`);
    assert.match(out, /closed true/);
  } finally {
    child.kill("SIGKILL");
  }
});
