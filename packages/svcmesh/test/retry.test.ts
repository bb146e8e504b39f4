// The retry interceptor alone, with a stubbed next: no network.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseTarget } from "svcmesh";
import { type CallContext, MeshError, createRetryInterceptor, shouldRetry } from "svcmesh/internal";

function ctx(over: Partial<CallContext> = {}): CallContext {
  const now = Date.now();
  return { caller: "c", target: parseTarget("svc"), endpoint: "e", payload: 1, deadline: now + 2000, signal: undefined, key: "svc.v1", idempotent: false, rateLimit: undefined, attempt: 0, attemptDeadline: now + 2000, requestId: "r1", startedAt: now, parentTrace: undefined, traceId: "", spanId: "", traceLines: "", reply: undefined, ...over };
}

const settings = { attempts: 3, backoffMs: 1, maxBackoffMs: 5 };

test("which failures are retried", () => {
  assert.equal(shouldRetry(new MeshError("NO_RESPONDERS", "x"), false), true);
  assert.equal(shouldRetry(new MeshError("TIMEOUT", "x"), false), false);
  assert.equal(shouldRetry(new MeshError("TIMEOUT", "x"), true), true);
  assert.equal(shouldRetry(new MeshError("UNAVAILABLE", "x"), false), false);
  assert.equal(shouldRetry(new MeshError("UNAVAILABLE", "x", { details: { neverSent: true } }), false), true);
  assert.equal(shouldRetry(new MeshError("TIMEOUT", "cancelled", { retryable: false }), true), false);
  for (const code of ["BAD_REQUEST", "FORBIDDEN", "HANDLER_ERROR", "CIRCUIT_OPEN", "NOT_FOUND", "RATE_LIMITED"] as const) {
    assert.equal(shouldRetry(new MeshError(code, "x"), true), false, code);
  }
});

test("retries NO_RESPONDERS until it succeeds, counting attempts", async () => {
  const retry = createRetryInterceptor({ settingsFor: () => settings, random: () => 1 });
  const c = ctx();
  let calls = 0;
  const out = await retry.interceptor(c, async () => {
    calls++;
    if (calls < 3) throw new MeshError("NO_RESPONDERS", "nobody");
    return "ok";
  });
  assert.equal(out, "ok");
  assert.equal(calls, 3);
  assert.equal(c.attempt, 3);
});

test("a timeout is retried only for idempotent endpoints", async () => {
  const retry = createRetryInterceptor({ settingsFor: () => settings });
  for (const idempotent of [false, true]) {
    let calls = 0;
    await assert.rejects(retry.interceptor(ctx({ idempotent }), async () => {
      calls++;
      throw new MeshError("TIMEOUT", "late");
    }), { code: "TIMEOUT" });
    assert.equal(calls, idempotent ? 3 : 1);
  }
});

test("each attempt gets its own deadline, never past the call's", async () => {
  const retry = createRetryInterceptor({ settingsFor: () => ({ ...settings, attemptTimeoutMs: 100 }) });
  const c = ctx({ idempotent: true });
  const seen: number[] = [];
  await assert.rejects(retry.interceptor(c, async (x) => {
    seen.push(x.attemptDeadline - Date.now());
    throw new MeshError("TIMEOUT", "late");
  }));
  assert.equal(seen.length, 3);
  for (const left of seen) assert.ok(left <= 100 && left > 50, `attempt budget ${left}`);
  const short = ctx({ idempotent: true, deadline: Date.now() + 30 });
  await assert.rejects(retry.interceptor(short, async (x) => {
    assert.ok(x.attemptDeadline <= short.deadline);
    throw new MeshError("TIMEOUT", "late");
  }));
});

test("no retry starts when its backoff would pass the deadline; exhaustion is reported", async () => {
  const retry = createRetryInterceptor({ settingsFor: () => ({ attempts: 5, backoffMs: 10_000, maxBackoffMs: 10_000 }), random: () => 1 });
  const reports: number[] = [];
  const dispose = retry.onExhausted((e) => reports.push(e.attempts));
  const started = Date.now();
  let calls = 0;
  await assert.rejects(retry.interceptor(ctx({ deadline: Date.now() + 200 }), async () => {
    calls++;
    throw new MeshError("NO_RESPONDERS", "nobody");
  }), { code: "NO_RESPONDERS" });
  assert.equal(calls, 1);
  assert.ok(Date.now() - started < 150, "failed at once instead of sleeping past the deadline");
  assert.deepEqual(reports, [1]);
  dispose();
  await assert.rejects(retry.interceptor(ctx({ deadline: Date.now() + 200 }), async () => { throw new MeshError("NO_RESPONDERS", "x"); }));
  assert.deepEqual(reports, [1], "a disposed listener hears nothing");
});

test("a backoff that is not a number ends the retries instead of defeating the deadline check", async () => {
  // Unchecked settings: after 1024 attempts the bound is 0 * 2 ** 1024 = NaN.
  const retry = createRetryInterceptor({ settingsFor: () => ({ attempts: 100_000, backoffMs: 0, maxBackoffMs: 0 }), random: () => 0.5 });
  const started = Date.now();
  let calls = 0;
  await assert.rejects(retry.interceptor(ctx({ deadline: Date.now() + 300 }), async () => {
    // Bounds the test if retries go on past the deadline.
    if (++calls > 3000) throw new MeshError("BAD_REQUEST", "still retrying");
    throw new MeshError("NO_RESPONDERS", "nobody");
  }), { code: "NO_RESPONDERS" });
  assert.ok(Date.now() - started < 1000, `gave up after ${Date.now() - started} ms`);
});

test("cancelling during backoff rejects at once and leaves no timer", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const retry = createRetryInterceptor({ settingsFor: () => ({ attempts: 3, backoffMs: 60_000, maxBackoffMs: 60_000 }), random: () => 1 });
  const ac = new AbortController();
  let calls = 0;
  const p = retry.interceptor(ctx({ deadline: Date.now() + 3_600_000, signal: ac.signal }), async () => {
    calls++;
    throw new MeshError("NO_RESPONDERS", "nobody");
  });
  await new Promise((r) => setImmediate(r)); // first attempt fails, backoff starts
  ac.abort();
  await assert.rejects(p, (e: MeshError) => e.code === "TIMEOUT" && e.retryable === false);
  t.mock.timers.tick(120_000);
  await new Promise((r) => setImmediate(r));
  assert.equal(calls, 1, "no attempt after the cancel");
});
