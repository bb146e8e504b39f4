// The audit trail against a real JetStream server: one record per call that reached a
// handler, stored once even when the call was retried, re-sent until acknowledged
// (here: while the stream does not exist yet), and a bounded, visible backlog.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Writable } from "node:stream";
import { nanos } from "nats";
import pino from "pino";
import { headers as natsHeaders, connect as natsConnect, type NatsConnection } from "nats";
import { type AuditRecord, AUDIT_STREAM, connect, decodeAuditRecord, ensureAuditStream, type Mesh } from "svcmesh";
import { decodeBody, encodeBody } from "svcmesh/internal";
import { z } from "zod";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
let raw: NatsConnection;
const meshes: Mesh[] = [];

async function open(name: string, extra: Partial<Parameters<typeof connect>[0]> = {}, url = server.url, into = meshes): Promise<Mesh> {
  const m = await connect({ servers: url, name, logLevel: "silent", trace: false, ...extra });
  into.push(m);
  return m;
}

/** Meshes on a server of their own are closed before that server stops. */
async function closeAll(list: Mesh[]): Promise<void> {
  await Promise.allSettled(list.splice(0).map((m) => m.close()));
}

/** Every record stored for `service`, read with an ordered consumer. */
async function stored(service: string, nc = raw): Promise<AuditRecord[]> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(AUDIT_STREAM).catch(() => undefined);
  if (!info || info.state.messages === 0) return [];
  const consumer = await nc.jetstream().consumers.get(AUDIT_STREAM, { filterSubjects: `svc.audit.${service}` });
  const out: AuditRecord[] = [];
  const pending = (await consumer.info()).num_pending;
  if (pending === 0) return out;
  const messages = await consumer.fetch({ max_messages: pending, expires: 2_000 });
  for await (const m of messages) {
    const d = decodeAuditRecord(m.data);
    assert.ok(d.ok, d.ok ? "" : d.reason);
    out.push(d.record);
    if (out.length >= pending) break;
  }
  return out;
}

/** Runs `body` against a nats-server of its own (and a raw connection to it); its meshes are closed before the server stops. */
async function onOwnServer(options: { jetstream: boolean }, body: (s: { fresh: NatsServer; nc: NatsConnection; own: Mesh[] }) => Promise<void>): Promise<void> {
  const fresh = await startNatsServer(options.jetstream ? { jetstream: true } : {});
  const nc = await natsConnect({ servers: fresh.url });
  const own: Mesh[] = [];
  try {
    await body({ fresh, nc, own });
  } finally {
    await closeAll(own);
    await nc.close();
    await fresh.stop();
  }
}

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, waitMs = 5_000): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const v = await what();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(50);
  }
}

before(async () => {
  server = await startNatsServer({ jetstream: true });
  raw = await natsConnect({ servers: server.url });
});

after(async () => {
  await Promise.allSettled(meshes.splice(0).map((m) => m.close()));
  await raw.close();
  await server.stop();
});

describe("audit records", () => {
  test("one record per call that reached a handler, with who called what and how it ended", async () => {
    const host = await open("ledger-host");
    const svc = await host.serve({
      name: "ledger",
      version: "3.0.1",
      endpoints: {
        post: { input: z.object({ usd: z.number() }), handler: ({ usd }) => { if (usd < 0) throw new Error("negative"); return { ok: true }; } },
      },
    });
    const caller = await open("ledger-clerk");
    for (let i = 0; i < 10; i++) await caller.call("ledger", "post", { usd: i });
    await meshFailure(caller.call("ledger", "post", { usd: -1 })); // handler ran: recorded
    await meshFailure(caller.call("ledger", "post", { usd: "x" })); // refused before the handler: not recorded
    await meshFailure(caller.call("ledger", "nope")); // no such endpoint: not recorded
    const records = await until(() => stored("ledger"), (r) => r.length >= 11);
    assert.equal(records.length, 11);
    const failed = records.filter((r) => r.status !== "ok");
    assert.deepEqual(failed.map((r) => r.status), ["HANDLER_ERROR"]);
    for (const r of records) {
      assert.equal(r.caller, "ledger-clerk");
      assert.equal(r.service, "ledger");
      assert.equal(r.endpoint, "post");
      assert.equal(r.version, "3.0.1");
      assert.equal(r.instance, svc.id);
      assert.ok(r.durationMs >= 0);
      assert.ok(r.requestId.length > 0);
    }
    assert.equal(new Set(records.map((r) => r.requestId)).size, 11);
    const stats = host.auditStats()!;
    assert.equal(stats.stored, 11);
    assert.equal(stats.backlog, 0);
    assert.equal(stats.lost + stats.dropped, 0);
  });

  test("a call retried after a timeout ran its handler twice and left exactly one record", async () => {
    const host = await open("slowpay-host");
    let runs = 0;
    await host.serve({
      name: "slowpay",
      version: "1.0.0",
      endpoints: {
        refund: {
          idempotent: true,
          handler: async () => {
            if (++runs === 1) await sleep(700); // the first attempt times out at the caller
            return { refunded: true };
          },
        },
      },
    });
    const caller = await open("slowpay-clerk");
    const reply = await caller.call("slowpay", "refund", { claimId: "C-9" }, { timeoutMs: 4_000, retry: { attempts: 3, backoffMs: 10, attemptTimeoutMs: 300 } });
    assert.deepEqual(reply, { refunded: true });
    await until(async () => runs, (n) => n >= 2);
    await sleep(800); // the first attempt's handler finishes and writes its record too
    const records = await until(() => stored("slowpay"), (r) => r.length >= 1);
    assert.equal(runs, 2, "the handler ran once per attempt");
    assert.equal(records.length, 1, "one record for one logical call");
    const stats = await until(async () => host.auditStats()!, (s) => s.stored + s.duplicates >= 2);
    assert.equal(stats.stored, 1);
    assert.equal(stats.duplicates, 1, "the second write was recognised as the same call");
  });

  test("a request id from the wire is the record's message id, ASCII or not: a repeated one is stored once", async () => {
    // Records with printable ASCII ids are sent as prebuilt frames, others through
    // nc.publish (jetstream/acked-publisher.ts): both must deduplicate alike.
    const host = await open("idcheck-host");
    await host.serve({ name: "idcheck", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    const ids = ["raw-ascii-7", "réclamation-7 ✓"];
    for (const id of [...ids, ...ids]) {
      const h = natsHeaders();
      h.set("Mesh-Caller", "raw-client");
      h.set("Mesh-Request-Id", id);
      const reply = await raw.request("svc.idcheck.v1.ping", encodeBody(undefined), { timeout: 2_000, headers: h });
      assert.equal(reply.headers?.get("Mesh-Error-Code") ?? "", "", "the call succeeded");
    }
    const stats = await until(async () => host.auditStats()!, (s) => s.stored + s.duplicates >= 4);
    assert.deepEqual({ stored: stats.stored, duplicates: stats.duplicates, lost: stats.lost, dropped: stats.dropped }, { stored: 2, duplicates: 2, lost: 0, dropped: 0 });
    const records = await stored("idcheck");
    assert.deepEqual(records.map((r) => r.requestId).sort(), [...ids].sort());
  });

  test("records are re-sent with the same id until the stream can take them: none lost, none doubled", async () => {
    await onOwnServer({ jetstream: true }, async ({ fresh, nc, own }) => {
      // The stream does not exist and this mesh may not create it: JetStream answers
      // every publish with "no responders" until an operator creates it.
      const host = await open("late-stream-host", { audit: { createStream: false, ackTimeoutMs: 300 } }, fresh.url, own);
      await host.serve({ name: "latestream", version: "1.0.0", endpoints: { note: { handler: () => "noted" } } });
      const caller = await open("late-stream-clerk", {}, fresh.url, own);
      for (let i = 0; i < 25; i++) await caller.call("latestream", "note");
      await sleep(700);
      const waiting = host.auditStats()!;
      assert.equal(waiting.backlog, 25, "nothing is stored yet, nothing is lost: all wait");
      assert.equal(waiting.stored, 0);
      assert.ok(waiting.resent > 0, "records are being re-sent");
      await ensureAuditStream(nc);
      const records = await until(() => stored("latestream", nc), (r) => r.length >= 25, 8_000);
      assert.equal(records.length, 25);
      assert.equal(new Set(records.map((r) => r.requestId)).size, 25, "each stored once");
      const done = await until(async () => host.auditStats()!, (s) => s.backlog === 0);
      assert.equal(done.lost, 0);
      assert.equal(done.dropped, 0);
    });
  });

  test("the backlog is bounded and visible: beyond maxBacklog records are dropped and counted, calls unaffected", async () => {
    await onOwnServer({ jetstream: true }, async ({ fresh, own }) => {
      const host = await open("bounded-host", { audit: { createStream: false, maxBacklog: 5, ackTimeoutMs: 200, closeTimeoutMs: 200 } }, fresh.url, own);
      await host.serve({ name: "bounded", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
      const caller = await open("bounded-clerk", {}, fresh.url, own);
      for (let i = 0; i < 20; i++) assert.equal(await caller.call("bounded", "ping"), "pong");
      const stats = host.auditStats()!;
      assert.equal(stats.backlog, 5);
      assert.equal(stats.dropped, 15);
      await host.close();
      assert.equal(host.auditStats()!.lost, 5, "what was never stored is counted lost at close, not forgotten");
    });
  });

  test('whenFull "refuse" fails closed: with the backlog full, calls are refused before their handler runs, and no record is dropped', async () => {
    await onOwnServer({ jetstream: true }, async ({ fresh, nc, own }) => {
      // No stream yet, and this mesh may not create it: records wait and are re-sent.
      const host = await open("closed-host", { audit: { createStream: false, maxBacklog: 5, ackTimeoutMs: 200, whenFull: "refuse" } }, fresh.url, own);
      let ran = 0;
      await host.serve({ name: "closed", version: "1.0.0", endpoints: { ping: { handler: () => ++ran } } });
      const caller = await open("closed-clerk", {}, fresh.url, own);
      const noRetry = { retry: { attempts: 1 } };
      for (let i = 0; i < 5; i++) assert.equal(await caller.call("closed", "ping", undefined, noRetry), i + 1);
      for (let i = 0; i < 3; i++) {
        const e = await meshFailure(caller.call("closed", "ping", undefined, noRetry));
        assert.equal(e.code, "UNAVAILABLE");
        assert.match(e.message, /audit backlog is full/);
      }
      assert.equal(ran, 5, "refused calls never reached the handler");
      const full = host.auditStats()!;
      assert.deepEqual({ backlog: full.backlog, refused: full.refused, dropped: full.dropped }, { backlog: 5, refused: 3, dropped: 0 });
      // Once the stream exists the backlog drains, and calls run again.
      await ensureAuditStream(nc);
      await until(async () => host.auditStats()!, (st) => st.backlog === 0, 8_000);
      assert.equal(await caller.call("closed", "ping", undefined, noRetry), 6);
      const records = await until(() => stored("closed", nc), (r) => r.length >= 6, 8_000);
      assert.equal(records.length, 6, "one record for each call that ran, none for the refused");
      const done = await until(async () => host.auditStats()!, (st) => st.stored === 6);
      assert.deepEqual({ stored: done.stored, dropped: done.dropped, lost: done.lost }, { stored: 6, dropped: 0, lost: 0 });
    });
  });

  test('whenFull "refuse": calls already running when the backlog fills keep their records (the backlog passes maxBacklog by those)', async () => {
    await onOwnServer({ jetstream: true }, async ({ fresh, own }) => {
      const host = await open("overshoot-host", { audit: { createStream: false, maxBacklog: 5, ackTimeoutMs: 200, whenFull: "refuse", closeTimeoutMs: 200 } }, fresh.url, own);
      await host.serve({ name: "overshoot", version: "1.0.0", endpoints: { slow: { handler: async () => { await sleep(200); return "done"; } } } });
      const caller = await open("overshoot-clerk", {}, fresh.url, own);
      const replies = await Promise.all(Array.from({ length: 20 }, () => caller.call("overshoot", "slow", undefined, { retry: { attempts: 1 } })));
      assert.ok(replies.every((r) => r === "done"), "all 20 were admitted while the backlog was empty");
      const stats = await until(async () => host.auditStats()!, (st) => st.backlog >= 20);
      assert.deepEqual({ backlog: stats.backlog, dropped: stats.dropped }, { backlog: 20, dropped: 0 });
    });
  });

  test("the trail tells operators when it stops keeping records and when it keeps them again: one audit_degraded, then one audit_recovered", async () => {
    await onOwnServer({ jetstream: true }, async ({ fresh, nc, own }) => {
      const seen: Array<Record<string, unknown>> = [];
      const sub = nc.subscribe("svc.events.*.*", { callback: (_e, m) => m.subject.startsWith("svc.events.audit_") && seen.push(decodeBody(m.data) as Record<string, unknown>) });
      // No stream yet, and neither host may create it: records wait until the backlog fills.
      const audit = { createStream: false, maxBacklog: 3, ackTimeoutMs: 200, closeTimeoutMs: 200 } as const;
      const refusing = await open("told-refuse-host", { audit: { ...audit, whenFull: "refuse" } }, fresh.url, own);
      const dropping = await open("told-drop-host", { audit: { ...audit, whenFull: "drop" } }, fresh.url, own);
      await refusing.serve({ name: "toldrefuse", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
      await dropping.serve({ name: "tolddrop", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
      const caller = await open("told-clerk", {}, fresh.url, own);
      const once = { retry: { attempts: 1 } };
      for (let i = 0; i < 3; i++) await caller.call("toldrefuse", "ping", undefined, once);
      for (let i = 0; i < 2; i++) assert.equal((await meshFailure(caller.call("toldrefuse", "ping", undefined, once))).code, "UNAVAILABLE");
      for (let i = 0; i < 5; i++) assert.equal(await caller.call("tolddrop", "ping", undefined, once), "pong");
      const degraded = await until(async () => seen.filter((e) => e.type === "audit_degraded"), (d) => d.length >= 2);
      const pick = (e: Record<string, unknown> | undefined) => e && { service: e.service, source: e.source, mode: e.mode, reason: e.reason, backlog: e.backlog, maxBacklog: e.maxBacklog };
      assert.deepEqual(pick(degraded.find((e) => e.service === "toldrefuse")), { service: "toldrefuse", source: "told-refuse-host", mode: "refuse", reason: "backlog_full", backlog: 3, maxBacklog: 3 });
      assert.deepEqual(pick(degraded.find((e) => e.service === "tolddrop")), { service: "tolddrop", source: "told-drop-host", mode: "drop", reason: "backlog_full", backlog: 3, maxBacklog: 3 });
      assert.equal(degraded.length, 2, "one event per episode and service, not one per lost record");
      assert.equal(seen.filter((e) => e.type === "audit_recovered").length, 0, "nothing recovers while nothing can be stored");
      // The stream appears: the backlogs drain and each trail says it keeps records again.
      await ensureAuditStream(nc);
      const recovered = await until(async () => seen.filter((e) => e.type === "audit_recovered"), (r) => r.length >= 2, 8_000);
      const counts = (e: Record<string, unknown> | undefined) => e && { mode: e.mode, dropped: e.dropped, refused: e.refused };
      assert.deepEqual(counts(recovered.find((e) => e.service === "toldrefuse")), { mode: "refuse", dropped: 0, refused: 2 });
      assert.deepEqual(counts(recovered.find((e) => e.service === "tolddrop")), { mode: "drop", dropped: 2, refused: 0 });
      assert.ok(recovered.every((e) => typeof e.durationMs === "number" && e.durationMs > 0));
      // Records are stored again: calls now tell nothing new.
      const before = seen.length;
      for (let i = 0; i < 3; i++) await caller.call("tolddrop", "ping", undefined, once);
      await sleep(300);
      assert.equal(seen.length, before, "records stored again: no new event");
      sub.unsubscribe();
    });
  });

  test('whenFull "refuse" without JetStream keeps the records waiting and refuses calls once the backlog is full', async () => {
    await onOwnServer({ jetstream: false }, async ({ fresh, own }) => {
      const host = await open("closed-nojs-host", { audit: { maxBacklog: 3, whenFull: "refuse", closeTimeoutMs: 200 } }, fresh.url, own);
      await host.serve({ name: "closednojs", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
      const caller = await open("closed-nojs-clerk", {}, fresh.url, own);
      for (let i = 0; i < 3; i++) assert.equal(await caller.call("closednojs", "ping", undefined, { retry: { attempts: 1 } }), "pong");
      await sleep(300); // the failed stream check would have released the records in "drop" mode
      assert.equal((await meshFailure(caller.call("closednojs", "ping", undefined, { retry: { attempts: 1 } }))).code, "UNAVAILABLE");
      const stats = host.auditStats()!;
      assert.deepEqual({ backlog: stats.backlog, dropped: stats.dropped, refused: stats.refused }, { backlog: 3, dropped: 0, refused: 1 });
    });
  });

  test("audit options that cannot work fail at connect, before connecting, naming the option", async () => {
    const refused = async (audit: Record<string, unknown>, message: RegExp) =>
      assert.rejects(connect({ servers: "nats://127.0.0.1:1", name: "x", audit: audit as never }), (e: Error & { code?: string }) => e.code === "BAD_REQUEST" && message.test(e.message));
    await refused({ whenFull: "block" }, /audit.whenFull must be "drop" or "refuse"/);
    await refused({ maxBacklog: 0 }, /audit.maxBacklog must be a whole number ≥ 1/);
    await refused({ ackTimeoutMs: -5 }, /audit.ackTimeoutMs/);
    await refused({ maxInFlight: 1.5 }, /audit.maxInFlight/);
    await refused({ stream: { replicas: 0 } }, /audit stream: replicas must be 1 to 5/);
    // The re-send horizon must end before the duplicate window does (20 minutes by default).
    await refused({ resendHorizonMs: 30 * 60_000 }, /resendHorizonMs \(1800000 ms\) must stay at least 5000 ms below the stream's duplicate window \(1200000 ms\)/);
    await refused({ resendHorizonMs: 60_000, stream: { duplicateWindowMs: 30_000 } }, /must stay .* below the stream's duplicate window \(30000 ms\)/);
    // Fine: a shorter horizon, or audit off.
    await assert.rejects(connect({ servers: "nats://127.0.0.1:1", name: "x", audit: { resendHorizonMs: 20_000, stream: { duplicateWindowMs: 30_000 } } } as never), (e: Error & { code?: string }) => e.code !== "BAD_REQUEST");
    await assert.rejects(connect({ servers: "nats://127.0.0.1:1", name: "x", audit: { enabled: false, maxBacklog: 0 } } as never), (e: Error & { code?: string }) => e.code !== "BAD_REQUEST");
  });

  test("an existing stream whose duplicate window is shorter than the re-send horizon: re-sends stop in time, and the log says so", async () => {
    await onOwnServer({ jetstream: true }, async ({ fresh, nc, own }) => {
      // An operator made the stream with a 20 s window; the writer's horizon is 10 minutes.
      await (await nc.jetstreamManager()).streams.add({ name: AUDIT_STREAM, subjects: ["svc.audit.>"], duplicate_window: nanos(20_000) });
      const lines: { level: number; msg: string; windowMs?: number }[] = [];
      const logger = pino({ level: "warn" }, new Writable({ write(chunk: Buffer, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb(); } }));
      const host = await open("window-host", { logger } as never, fresh.url, own);
      await host.serve({ name: "window", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
      const caller = await open("window-clerk", {}, fresh.url, own);
      assert.equal(await caller.call("window", "ping"), "pong");
      await until(async () => host.auditStats()!, (st) => st.stored === 1);
      const warning = lines.find((l) => /duplicate window \(20000 ms\) is too short/.test(l.msg));
      assert.ok(warning, `logged: ${JSON.stringify(lines)}`);
      assert.match(warning.msg, /re-sends now stop after 15000 ms/);
    });
  });

  test("without JetStream calls work, and records are counted as dropped instead of piling up", async () => {
    await onOwnServer({ jetstream: false }, async ({ fresh, nc, own }) => {
      const told: Array<Record<string, unknown>> = [];
      nc.subscribe("svc.events.audit_degraded.nojs", { callback: (_e, m) => told.push(decodeBody(m.data) as Record<string, unknown>) });
      await nc.flush();
      const host = await open("nojs-host", {}, fresh.url, own);
      await host.serve({ name: "nojs", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
      const caller = await open("nojs-clerk", {}, fresh.url, own);
      for (let i = 0; i < 10; i++) assert.equal(await caller.call("nojs", "ping"), "pong");
      const stats = await until(async () => host.auditStats()!, (s) => s.dropped === 10);
      assert.equal(stats.dropped, 10);
      assert.equal(stats.backlog, 0);
      // Mesh events go out as plain messages without JetStream: live subscribers are told.
      await until(async () => told.length, (n) => n > 0);
      assert.deepEqual(told.map((e) => ({ mode: e.mode, reason: e.reason })), [{ mode: "drop", reason: "no_jetstream" }]);
    });
  });

  test("audit can be turned off per service and per mesh", async () => {
    const host = await open("quiet-host");
    await host.serve({ name: "quiet", version: "1.0.0", audit: false, endpoints: { ping: { handler: () => "pong" } } });
    const offMesh = await open("off-host", { audit: { enabled: false } });
    await offMesh.serve({ name: "offmesh", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    const caller = await open("quiet-clerk");
    await caller.call("quiet", "ping");
    await caller.call("offmesh", "ping");
    await sleep(300);
    assert.equal((await stored("quiet")).length, 0);
    assert.equal((await stored("offmesh")).length, 0);
    assert.equal(host.auditStats()!.stored, 0);
    assert.equal(offMesh.auditStats(), undefined);
    await assert.rejects(host.serve({ name: "x", version: "1.0.0", audit: "yes" as never, endpoints: { a: { handler: () => 1 } } }), /audit must be true or false/);
  });
});
