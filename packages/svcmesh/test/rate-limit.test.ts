// Per-caller rate limits enforced by the callee, against a real nats-server started for
// this file. Noisy callers send raw NATS requests with a Mesh-Caller header, so what is
// tested is the callee's enforcement, not a caller library's politeness.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connect as natsConnect, headers as natsHeaders, type NatsConnection, RequestStrategy } from "nats";
import { connect, type Mesh, type MeshError, isMeshError, newIdentity, parsePolicy } from "svcmesh";
import { decodeReply, encodeBody } from "svcmesh/internal";
import { z } from "zod";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";
import { meshFailure, meshPool } from "../../../test/helpers/mesh.ts";

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

type Outcome = { ok: true; value: unknown } | { ok: false; error: MeshError };

/** One request as `caller` (no Mesh-Caller header when undefined), straight over NATS. */
async function rawCall(subject: string, caller: string | undefined, payload: unknown = {}): Promise<Outcome> {
  const h = natsHeaders();
  if (caller !== undefined) h.set("Mesh-Caller", caller);
  const msg = await raw.request(subject, encodeBody(payload), { timeout: 2000, headers: h });
  try {
    return { ok: true, value: decodeReply(msg, subject) };
  } catch (e) {
    assert.ok(isMeshError(e), `expected a MeshError, got ${String(e)}`);
    return { ok: false, error: e };
  }
}

function tally(outcomes: Outcome[]): { ok: number; limited: MeshError[]; other: MeshError[] } {
  const limited: MeshError[] = [];
  const other: MeshError[] = [];
  let ok = 0;
  for (const o of outcomes) {
    if (o.ok) ok++;
    else if (o.error.code === "RATE_LIMITED") limited.push(o.error);
    else other.push(o.error);
  }
  return { ok, limited, other };
}

describe("per-caller limits", () => {
  test("a noisy caller sending 10× its limit is RATE_LIMITED while a quiet caller's calls all succeed", async () => {
    const host = await mesh("rl-host");
    let handled = 0;
    await host.serve({
      name: "rl-ledger",
      version: "1.0.0",
      rateLimits: { noisy: { rps: 5, burst: 5 }, quiet: { rps: 100, burst: 20 } },
      endpoints: { post: { input: z.object({ n: z.number() }), handler: (req) => { handled++; return req.n; } } },
    });
    const quiet = await mesh("quiet");
    const noisy = Array.from({ length: 50 }, (_, n) => rawCall("svc.rl-ledger.v1.post", "noisy", { n }));
    const calm = Array.from({ length: 10 }, (_, n) => quiet.call("rl-ledger", "post", { n }));
    const [noisyOut, calmOut] = await Promise.all([Promise.all(noisy), Promise.all(calm)]);

    assert.deepEqual(calmOut, Array.from({ length: 10 }, (_, n) => n), "every quiet call succeeds");
    const t = tally(noisyOut);
    assert.deepEqual(t.other, []);
    assert.ok(t.ok >= 5 && t.ok <= 8, `the noisy caller got its burst (5) and little more, not ${t.ok}`);
    assert.equal(t.ok + t.limited.length, 50);
    assert.equal(handled, t.ok + 10, "rejected requests never reach the handler");

    const e = t.limited[0]!;
    assert.equal(e.retryable, true);
    assert.match(e.message, /noisy is over its rate limit for rl-ledger/);
    const d = e.details as { retryAfterMs: number; limit: { rps: number; burst: number }; caller: string };
    assert.ok(d.retryAfterMs >= 1 && d.retryAfterMs <= 200, `retryAfterMs ${d.retryAfterMs} (one token per 200 ms)`);
    assert.deepEqual(d.limit, { rps: 5, burst: 5 });
    assert.equal(d.caller, "noisy");
  });

  test("the limit is checked before the input is decoded or validated", async () => {
    const host = await mesh("rl-cheap-host");
    await host.serve({
      name: "rl-cheap",
      version: "1.0.0",
      rateLimits: { hasty: { rps: 1, burst: 1 } },
      endpoints: { post: { input: z.object({ n: z.number() }), handler: (req) => req.n } },
    });
    assert.equal((await rawCall("svc.rl-cheap.v1.post", "hasty", { n: 1 })).ok, true);
    const bad = await rawCall("svc.rl-cheap.v1.post", "hasty", { n: "not a number" });
    assert.equal(!bad.ok && bad.error.code, "RATE_LIMITED");
    const garbage = await raw.request("svc.rl-cheap.v1.post", new Uint8Array([0xc1]), { timeout: 2000, headers: callerHeader("hasty") });
    assert.equal(garbage.headers?.get("Mesh-Error-Code"), "RATE_LIMITED");
  });

  test("\"*\" limits each caller not named, anonymous ones included; named callers keep their own limit", async () => {
    const host = await mesh("rl-star-host");
    await host.serve({
      name: "rl-star",
      version: "1.0.0",
      rateLimits: { "*": { rps: 2, burst: 3 }, vip: { rps: 1000 } },
      endpoints: { ping: { handler: () => "pong" } },
    });
    const subject = "svc.rl-star.v1.ping";
    const burst = (caller: string | undefined, n: number) => Promise.all(Array.from({ length: n }, () => rawCall(subject, caller)));
    const [a, b, anon, vip] = await Promise.all([burst("stranger-a", 15), burst("stranger-b", 15), burst(undefined, 15), burst("vip", 60)]);
    for (const [who, out] of [["stranger-a", a], ["stranger-b", b], ["anonymous", anon]] as const) {
      const t = tally(out);
      assert.deepEqual(t.other, []);
      assert.ok(t.ok >= 3 && t.ok <= 5, `${who}: its own bucket of 3 from "*", got ${t.ok}`);
      assert.deepEqual((t.limited[0]!.details as { limit: unknown }).limit, { rps: 2, burst: 3 });
    }
    assert.equal((tally(anon).limited[0]!.details as { caller: string }).caller, "");
    assert.match(tally(anon).limited[0]!.message, /an anonymous caller is over its rate limit/);
    assert.equal(tally(vip).ok, 60, "a named caller is not held to \"*\"");
  });

  test("without \"*\", callers not named are not limited", async () => {
    const host = await mesh("rl-open-host");
    await host.serve({
      name: "rl-open",
      version: "1.0.0",
      rateLimits: { capped: { rps: 1, burst: 1 } },
      endpoints: { ping: { handler: () => "pong" } },
    });
    const out = await Promise.all(Array.from({ length: 30 }, () => rawCall("svc.rl-open.v1.ping", "someone")));
    assert.equal(tally(out).ok, 30);
    const capped = tally(await Promise.all(Array.from({ length: 5 }, () => rawCall("svc.rl-open.v1.ping", "capped"))));
    assert.equal(capped.ok, 1);
  });

  test("limits are per service: every endpoint draws on the caller's one bucket, on both lanes", async () => {
    const host = await mesh("rl-shared-host");
    await host.serve({
      name: "rl-shared",
      version: "1.2.3",
      rateLimits: { "*": { rps: 1, burst: 4 } },
      endpoints: { a: { handler: () => "a" }, b: { handler: () => "b" } },
    });
    const subjects = ["svc.rl-shared.v1.a", "svc.rl-shared.v1.b", "svc.rl-shared.1_2_3.a", "svc.rl-shared.1_2_3.b"];
    const first = await Promise.all(subjects.map((s) => rawCall(s, "c1")));
    assert.equal(tally(first).ok, 4);
    const second = await Promise.all(subjects.map((s) => rawCall(s, "c1")));
    assert.ok(tally(second).ok <= 1, "the bucket is spent across endpoints and lanes");
  });
});

describe("service-wide limits across instances", () => {
  test("two instances together admit about the limit, not twice it; one alone gets it all back", async () => {
    const name = "rl-wide";
    const limit = { rps: 20, burst: 10 };
    const hostA = await mesh("rl-wide-a");
    const hostB = await mesh("rl-wide-b");
    await hostA.serve({ name, version: "1.0.0", rateLimits: { "*": limit }, endpoints: { ping: { handler: () => "pong" } } });
    const b = await hostB.serve({ name, version: "1.1.0", rateLimits: { "*": limit }, endpoints: { ping: { handler: () => "pong" } } });
    await sleep(700); // A hears of B (announcement), and its share check runs (every 250 ms)

    // Offer ~200 rps for 2 s, 10× the limit. Expect burst + rps × 2 s = 50 in all;
    // without shares it would be about 100.
    const subject = `svc.${name}.v1.ping`;
    const started = Date.now();
    let ok = 0;
    let limited = 0;
    for (let round = 0; round < 40 && Date.now() - started < 5_000; round++) {
      const t = tally(await Promise.all(Array.from({ length: 10 }, () => rawCall(subject, "flood"))));
      assert.deepEqual(t.other, []);
      ok += t.ok;
      limited += t.limited.length;
      await sleep(50);
    }
    const seconds = (Date.now() - started) / 1000;
    const expected = limit.burst + limit.rps * seconds;
    assert.ok(ok >= expected * 0.5 && ok <= expected * 1.4, `${ok} admitted in ${seconds.toFixed(2)} s; expected about ${expected.toFixed(0)}, and twice that without shares (${limited} limited)`);

    await b.stop();
    await sleep(1_000); // A hears B stop and recounts; its bucket refills completely
    const alone = tally(await Promise.all(Array.from({ length: 30 }, () => rawCall(subject, "flood"))));
    assert.ok(alone.ok >= 9 && alone.ok <= 12, `alone, A allows the whole burst of 10 again (a share would be 5), got ${alone.ok}`);
  });
});

describe("shares follow the major a caller reaches", () => {
  test("an instance of another major (an upgrade side by side) does not shrink this one's share: it never sees these calls", async () => {
    const name = "rl-majors";
    const limit = { rps: 1, burst: 10 };
    const hostOld = await mesh("rl-majors-old");
    const hostNew = await mesh("rl-majors-new");
    await hostOld.serve({ name, version: "1.0.0", rateLimits: { "*": limit }, endpoints: { ping: { handler: () => "pong" } } });
    await hostNew.serve({ name, version: "2.0.0", rateLimits: { "*": limit }, endpoints: { ping: { handler: () => "pong" } } });
    await sleep(700); // each hears of the other, and its share check runs
    const t = tally(await Promise.all(Array.from({ length: 30 }, () => rawCall(`svc.${name}.v2.ping`, "upgrader"))));
    assert.deepEqual(t.other, []);
    assert.ok(t.ok >= 9 && t.ok <= 12, `the v2 instance allows its whole burst of 10 (a share counting v1 would be 5), got ${t.ok}`);
  });
});

describe("retryAfterMs with several instances", () => {
  test("is the wait for the instances together, not for the one that answered", async () => {
    const name = "rl-retry-after";
    const limit = { rps: 4, burst: 2 }; // each of two instances: 2 rps, burst 1
    const hostA = await mesh("rl-retry-a");
    const hostB = await mesh("rl-retry-b");
    for (const h of [hostA, hostB]) await h.serve({ name, version: "1.0.0", rateLimits: { "*": limit }, endpoints: { ping: { handler: () => "pong" } } });
    await sleep(700); // shares counted
    const t = tally(await Promise.all(Array.from({ length: 12 }, () => rawCall(`svc.${name}.v1.ping`, "hasty"))));
    assert.ok(t.limited.length > 0, "over the limit");
    const waits = t.limited.map((e) => (e.details as { retryAfterMs: number }).retryAfterMs);
    // One instance's bucket refills a token in ~500 ms; either instance may take the next call.
    assert.ok(waits.every((w) => w > 0 && w <= 300), `retryAfterMs ${waits.join(", ")}`);
  });
});

describe("the caller's mirror", () => {
  test("gives back the token of a call the callee's bulkhead turned away, as the callee does", async () => {
    const name = "rl-mirror-refund";
    const host = await mesh("rl-mirror-host");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    await host.serve({
      name,
      version: "1.0.0",
      rateLimits: { "*": { rps: 0.1, burst: 2 } }, // two calls, then one every 10 s
      endpoints: { slow: { maxConcurrent: 1, handler: async () => { await gate; return "done"; } }, quick: { handler: () => "ok" } },
    });
    const caller = await connect({ servers: server.url, name: "rl-mirror-caller", logLevel: "silent", defaults: { retry: { attempts: 1 } } });
    try {
      const running = caller.call(name, "slow", undefined, { timeoutMs: 5_000 }); // token 1 of 2
      await sleep(200);
      const full = await meshFailure(caller.call(name, "slow")); // token 2, turned away: given back
      assert.equal(full.code, "UNAVAILABLE");
      assert.equal(await caller.call(name, "quick"), "ok", "the callee would take it, so the mirror must too");
      release();
      assert.equal(await running, "done");
    } finally {
      release();
      await caller.close();
    }
  });
});

describe("limits from the policy", () => {
  test("a policy whose limits name other callers: the caller's mirror follows the callee, which no longer limits it (the code's limit is replaced)", async () => {
    const name = "rl-policy";
    const [other, me] = [newIdentity(), newIdentity()];
    const doc = parsePolicy(
      `version: 1\nidentities:\n  someone-else: { key: ${other.publicKey} }\n  rl-policy-caller: { key: ${me.publicKey} }\n` +
        `defaults:\n  allow: ["*"]\nservices:\n  ${name}:\n    rateLimits:\n      someone-else: { rps: 1, burst: 1 }\n`,
    );
    assert.ok(doc.ok, doc.ok ? "" : JSON.stringify(doc.errors));
    const host = await connect({ servers: server.url, name: "rl-policy-host", logLevel: "silent", policy: { watch: false } });
    const caller = await connect({ servers: server.url, name: "rl-policy-caller", seed: me.seed, logLevel: "silent", policy: { watch: false }, defaults: { retry: { attempts: 1 } } });
    try {
      await host.serve({ name, version: "1.0.0", rateLimits: { "*": { rps: 1, burst: 1 } }, endpoints: { ping: { handler: () => "pong" } } });
      host.policy.set(doc.policy, 1);
      caller.policy.set(doc.policy, 1);
      await sleep(100);
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => caller.call(name, "ping")));
      const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason as MeshError);
      assert.deepEqual(refused.map((e) => `${e.code} local=${String((e.details as { local?: boolean } | undefined)?.local)}`), [], "neither side limits a caller the policy's limits do not name");
    } finally {
      await Promise.allSettled([caller.close(), host.close()]);
    }
  });
});

describe("a policy edit", () => {
  test("that leaves a caller's limit alone does not refill its bucket", async () => {
    const name = "rl-policy-edit";
    const [me, other] = [newIdentity(), newIdentity()];
    const doc = (otherRps: number) => {
      const parsed = parsePolicy(
        `version: 1\nidentities:\n  rl-edit-caller: { key: ${me.publicKey} }\n  someone-else: { key: ${other.publicKey} }\n` +
          `defaults:\n  allow: ["*"]\nservices:\n  ${name}:\n    rateLimits:\n      rl-edit-caller: { rps: 0.1, burst: 1 }\n      someone-else: { rps: ${otherRps}, burst: 1 }\n`,
      );
      assert.ok(parsed.ok, parsed.ok ? "" : JSON.stringify(parsed.errors));
      return parsed.policy;
    };
    const host = await connect({ servers: server.url, name: "rl-edit-host", logLevel: "silent", policy: { watch: false } });
    // The caller follows no policy: no mirror, so what is refused is the callee's doing.
    const caller = await connect({ servers: server.url, name: "rl-edit-caller", seed: me.seed, logLevel: "silent", policy: { watch: false }, defaults: { retry: { attempts: 1 } } });
    try {
      await host.serve({ name, version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
      host.policy.set(doc(5), 1);
      await sleep(300);
      assert.equal(await caller.call(name, "ping"), "pong");
      assert.equal((await meshFailure(caller.call(name, "ping"))).code, "RATE_LIMITED", "one call per 10 s");
      host.policy.set(doc(6), 2); // another caller's limit changes
      await sleep(300);
      const after = await meshFailure(caller.call(name, "ping"));
      assert.equal(after.code, "RATE_LIMITED", "its bucket is still empty");
      assert.equal((after.details as { local?: boolean }).local, undefined, "refused by the callee");
    } finally {
      await Promise.allSettled([caller.close(), host.close()]);
    }
  });
});

describe("discovery and options", () => {
  test("the limits are published in the service's discovery metadata, burst filled in", async () => {
    const host = await mesh("rl-meta-host");
    await host.serve({
      name: "rl-meta",
      version: "1.0.0",
      rateLimits: { claims: { rps: 50, burst: 100 }, "*": { rps: 10 } },
      endpoints: { ping: { handler: () => "pong" } },
    });
    await host.serve({ name: "rl-meta-none", version: "1.0.0", endpoints: { ping: { handler: () => "pong" } } });
    const infos = await serviceInfos("rl-meta");
    assert.equal(infos.length, 1);
    assert.deepEqual(JSON.parse(infos[0]!.metadata.rate_limits!), { claims: { rps: 50, burst: 100 }, "*": { rps: 10, burst: 10 } });
    const none = await serviceInfos("rl-meta-none");
    assert.equal(none[0]!.metadata.rate_limits, undefined);
  });

  test("bad limits are refused with BAD_REQUEST naming the problem", async () => {
    const host = await mesh("rl-bad-host");
    const serveWith = (rateLimits: unknown) =>
      meshFailure(host.serve({ name: "rl-bad", version: "1.0.0", rateLimits: rateLimits as never, endpoints: { ping: { handler: () => "pong" } } }));
    const cases: [unknown, RegExp][] = [
      [{ claims: { rps: -1 } }, /rateLimits\["claims"\].*rps must be a positive number.*-1/],
      [{ claims: { rps: 0 } }, /rps must be a positive number/],
      [{ claims: { rps: Infinity } }, /rps must be a positive number/],
      [{ claims: { rps: "10" } }, /rps must be a positive number.*"10"/],
      [{ claims: {} }, /rps must be a positive number/],
      [{ claims: { rps: 10, burst: 0.5 } }, /burst must be a number ≥ 1/],
      [{ claims: { rps: 10, brust: 5 } }, /unknown key "brust"/],
      [{ claims: 10 }, /must be \{ rps, burst\? \}/],
      [{ "": { rps: 1 } }, /caller name cannot be empty/],
      [[{ rps: 1 }], /rateLimits of rl-bad must be an object/],
      ["10 rps", /rateLimits of rl-bad must be an object/],
    ];
    for (const [limits, message] of cases) {
      const e = await serveWith(limits);
      assert.equal(e.code, "BAD_REQUEST", JSON.stringify(limits));
      assert.match(e.message, message);
    }
    assert.deepEqual(await serviceInfos("rl-bad"), [], "nothing was started");
  });
});

function callerHeader(caller: string) {
  const h = natsHeaders();
  h.set("Mesh-Caller", caller);
  return h;
}

async function serviceInfos(name: string): Promise<{ metadata: Record<string, string> }[]> {
  const out: { metadata: Record<string, string> }[] = [];
  try {
    for await (const info of await raw.services.client({ strategy: RequestStrategy.JitterTimer, maxWait: 1000, jitter: 100 }).info(name)) out.push({ metadata: info.metadata ?? {} });
  } catch (e) {
    if ((e as { code?: string }).code !== "503") throw e;
  }
  return out;
}

// Compile-time: rateLimits is typed.
export async function typedLimits(m: Mesh): Promise<void> {
  await m.serve({
    name: "typed-limits",
    version: "1.0.0",
    // @ts-expect-error rps must be a number
    rateLimits: { claims: { rps: "10" } },
    endpoints: { ping: { handler: () => "pong" } },
  });
}
