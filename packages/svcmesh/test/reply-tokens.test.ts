// Reply tokens (client/transport.ts): an answered call's token is used again, so the reply
// subjects in use stay about as many as the calls in flight; a token that may still get
// a late answer (its call timed out) is never used again, and on a reused token a plain
// NATS answer (maybe a late second answer to the earlier call) is not taken. A spy
// subscribed next to the service sees every request's reply subject.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Msg, type MsgHdrs, connect as natsConnect, headers as natsHeaders, type NatsConnection } from "nats";
import { MeshError } from "svcmesh";
import { encodeBody, onlyAnswer } from "svcmesh/internal";
import { type Attempt, RequestTransport } from "../src/client/transport.ts";
import { z } from "zod";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { meshFailure, meshPool } from "../../../test/helpers/mesh.ts";

let server: NatsServer;
let spy: NatsConnection;
const pool = meshPool(() => server.url);

/** Reply subjects of the requests sent to `subject`, in order. */
function replySubjectsOf(subject: string): string[] {
  const seen: string[] = [];
  spy.subscribe(subject, { callback: (_e, m) => seen.push(m.reply ?? "") });
  return seen;
}

/** Serves `name` 1.0.0 with `extra` endpoints and `fast`, which answers { from: "fast", n } after `fastMs`. */
async function serveWithFast(name: string, fastMs: number, extra: Record<string, { handler: () => Promise<unknown> }>): Promise<void> {
  const host = await pool.open(`${name}-host`);
  await host.serve({
    name,
    version: "1.0.0",
    endpoints: { ...extra, fast: { input: z.object({ n: z.number() }), handler: async (req: { n: number }) => (await sleep(fastMs), { from: "fast", n: req.n }) } },
  });
}

before(async () => {
  server = await startNatsServer();
  spy = await natsConnect({ servers: server.url, name: "spy" });
});

after(async () => {
  await pool.closeAll();
  await spy.close();
  await server.stop();
});

test("answered calls give their reply subject back: one in use for calls in sequence, at most as many as in flight", async () => {
  const host = await pool.open("tokens-host");
  await host.serve({
    name: "tok-echo",
    version: "1.0.0",
    endpoints: { echo: { input: z.object({ n: z.number() }), handler: async (req: { n: number }) => ({ n: req.n }) } },
  });
  const seen = replySubjectsOf("svc.tok-echo.v1.echo");
  await spy.flush();
  const caller = await pool.open("tokens-caller");
  const echo = caller.client("tok-echo@^1");
  for (let n = 0; n < 200; n++) assert.deepEqual(await echo.call("echo", { n }), { n });
  assert.equal(seen.length, 200);
  assert.equal(new Set(seen).size, 1, `calls in sequence used ${new Set(seen).size} reply subjects`);

  seen.length = 0;
  for (let wave = 0; wave < 8; wave++) {
    const ns = Array.from({ length: 32 }, (_, i) => wave * 32 + i);
    assert.deepEqual(await Promise.all(ns.map((n) => echo.call("echo", { n }))), ns.map((n) => ({ n })));
  }
  assert.equal(seen.length, 256);
  assert.ok(new Set(seen).size <= 32, `8 waves of 32 calls used ${new Set(seen).size} reply subjects`);
});

test("a timed-out call's reply subject is never used again", async () => {
  await serveWithFast("tok-late", 5, { slow: { handler: async () => (await sleep(1_500), { from: "slow" }) } });
  const slowReplies = replySubjectsOf("svc.tok-late.v1.slow");
  const fastReplies = replySubjectsOf("svc.tok-late.v1.fast");
  await spy.flush();

  const caller = await pool.open("late-caller");
  const late = caller.client("tok-late@^1");
  assert.deepEqual(await late.call("fast", { n: -1 }), { from: "fast", n: -1 }); // discovered; its token answered
  const e = await meshFailure(late.call("slow", {}, { timeoutMs: 100, retry: { attempts: 1 } }));
  assert.equal(e.code, "TIMEOUT");
  assert.equal(slowReplies[0], fastReplies[0], "the answered first call's token was not used again");
  for (let n = 0; n < 50; n++) assert.deepEqual(await late.call("fast", { n }), { from: "fast", n });
  assert.ok(!fastReplies.slice(1).includes(slowReplies[0]!), "the timed-out call's reply subject was used again");
});

test("a second, late answer to an answered call's reply subject reaches no later call", async () => {
  await serveWithFast("tok-dup", 20, { once: { handler: async () => ({ from: "mesh" }) } });
  // A plain subscriber on the same subject (not in the queue group) answers every request as well, later.
  const lateAnswers: Promise<void>[] = [];
  const onceReplies: string[] = [];
  spy.subscribe("svc.tok-dup.v1.once", {
    callback: (_e, m) => {
      onceReplies.push(m.reply!);
      lateAnswers.push(sleep(150).then(() => spy.publish(m.reply!, encodeBody({ from: "late" }))));
    },
  });
  const fastReplies = replySubjectsOf("svc.tok-dup.v1.fast");
  await spy.flush();

  const caller = await pool.open("dup-caller");
  const dup = caller.client("tok-dup@^1");
  assert.deepEqual(await dup.call("fast", { n: -1 }), { from: "fast", n: -1 }); // discovered
  assert.deepEqual(await dup.call("once", {}), { from: "mesh" });
  // Calls in sequence on the same (reused) token while the second answer arrives: each must get its own.
  const until = Date.now() + 400;
  let n = 0;
  for (; Date.now() < until && n < 100; n++) assert.deepEqual(await dup.call("fast", { n }), { from: "fast", n });
  await Promise.all(lateAnswers);
  assert.equal(onceReplies.length, 1);
  assert.ok(fastReplies.slice(1).every((r) => r === onceReplies[0]), "the later calls did not reuse the answered call's token");
});

test("onlyAnswer: the server's 503 and mesh replies are a request's only answer; plain replies may not be", async () => {
  const host = await pool.open("only-host");
  await host.serve({
    name: "tok-only",
    version: "1.0.0",
    endpoints: { ok: { handler: async () => "ok" }, bad: { handler: async () => { throw new MeshError("NOT_FOUND", "nope"); } } },
  });
  const nc = await natsConnect({ servers: server.url, name: "only-raw" });
  try {
    const inbox = `_INBOX.only.${Date.now()}`;
    const got: Msg[] = [];
    nc.subscribe(`${inbox}.*`, { callback: (_e, m) => got.push(m) });
    spy.subscribe("raw.answer", { callback: (_e, m) => spy.publish(m.reply!, encodeBody("plain")) });
    await spy.flush();
    const bodyless = encodeBody({});
    nc.publish("nobody.listens.here", bodyless, { reply: `${inbox}.1` });
    nc.publish("svc.tok-only.v1.ok", bodyless, { reply: `${inbox}.2` });
    nc.publish("svc.tok-only.v1.bad", bodyless, { reply: `${inbox}.3` });
    nc.publish("raw.answer", bodyless, { reply: `${inbox}.4` });
    for (let i = 0; i < 100 && got.length < 4; i++) await sleep(20);
    const bySubject = new Map(got.map((m) => [m.subject.slice(inbox.length + 1), m]));
    assert.equal(bySubject.size, 4);
    assert.equal(bySubject.get("1")!.headers?.code, 503);
    assert.equal(onlyAnswer(bySubject.get("1")!), true, "503");
    assert.equal(onlyAnswer(bySubject.get("2")!), true, "mesh ok reply");
    assert.equal(onlyAnswer(bySubject.get("3")!), true, "mesh error reply");
    assert.equal(onlyAnswer(bySubject.get("4")!), false, "plain reply");
  } finally {
    await nc.close();
  }
});

test("a call sent again after a reconnect may be answered twice: its reply subject is never used again", async () => {
  const own = await startNatsServer();
  const reconnecting = { servers: own.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 };
  const responder = await natsConnect({ ...reconnecting, name: "twice-responder" });
  const nc = await natsConnect({ ...reconnecting, name: "twice-caller" });
  const transport = new RequestTransport(nc, { inboxPrefix: "_INBOX", callerName: "twice" });
  try {
    // Holds the first request; answers every later one at once. Both answers are mesh-like (Mesh- headers).
    const replySubjects: string[] = [];
    let held: string | undefined;
    const meshReply = (subject: string) => responder.publish(subject, encodeBody("done"), { headers: meshHeaders() });
    responder.subscribe("svc.twice.v1.put", {
      callback: (_e, m) => {
        replySubjects.push(m.reply!);
        if (held === undefined) held = m.reply!;
        else meshReply(m.reply!);
      },
    });
    await responder.flush();
    const attempt = (idempotent: boolean): Attempt => ({ attemptDeadline: Date.now() + 8_000, signal: undefined, requestId: `twice-${idempotent}`, idempotent, traceLines: "", reply: undefined });
    const call = transport.send("svc.twice.v1.put", encodeBody({}), attempt(true));
    call.catch(() => undefined); // judged below
    for (let i = 0; i < 100 && held === undefined; i++) await sleep(20);
    assert.ok(held, "the request reached the responder");
    await own.restart(); // the transport sends the idempotent call again on its token
    const outcome = await call.then((v) => v, (e: { code?: string }) => e.code);
    // Sent again, it is answered by the responder, or by the server's 503 if the responder was not back yet.
    assert.ok(outcome === "done" || outcome === "NO_RESPONDERS", String(outcome));
    meshReply(held!); // the first request's answer, late: a second answer on the same token
    await sleep(100); // (a flush here can fail with DISCONNECT: nats.js's ping from before the restart)
    for (let i = 0; i < 100; i++) {
      const next = await transport.send("svc.twice.v1.put", encodeBody({}), attempt(false)).catch((e: { code?: string }) => e.code);
      if (next === "done") break;
      await sleep(50); // NO_RESPONDERS until the responder has resubscribed
    }
    assert.ok(replySubjects.length >= 2);
    assert.notEqual(replySubjects.at(-1), held, "the re-sent call's reply subject was used again");
  } finally {
    transport.close("test over");
    await nc.close();
    await responder.close();
    await own.stop();
  }
});

/** Headers as a mesh endpoint's reply has them (its first header a Mesh- one). */
function meshHeaders(): MsgHdrs {
  const h = natsHeaders();
  h.set("Mesh-Instance", "twice-1");
  return h;
}
