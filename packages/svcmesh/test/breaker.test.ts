// The circuit-breaker interceptor alone, with a stubbed next and mocked timers: no network.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { type TestContext, test } from "node:test";
import { pino } from "pino";
import { MAX_PER_TARGET } from "../src/bounded.ts";
import { MeshError } from "../src/errors.ts";
import { type BreakerInterceptorOptions, type BreakerTransition, breakerIgnores, createBreakerInterceptor } from "../src/interceptors/breaker.ts";
import type { CallContext, Next } from "../src/pipeline.ts";
import type { BreakerSettings } from "../src/settings.ts";

function ctx(key = "svc.v1", over: Partial<CallContext> = {}): CallContext {
  const now = Date.now();
  return {
    caller: "c",
    target: { text: "svc", service: "svc", range: undefined },
    endpoint: "e",
    payload: 1,
    deadline: now + 2000,
    signal: undefined,
    key,
    idempotent: false,
    attempt: 0,
    attemptDeadline: now + 2000,
    requestId: "r1",
    startedAt: now,
    parentTrace: undefined,
    traceId: "",
    spanId: "",
    traceLines: "",
    reply: undefined,
    ...over,
  } as CallContext;
}

const base: BreakerSettings = {
  enabled: true,
  errorThresholdPercentage: 50,
  volumeThreshold: 4,
  resetTimeoutMs: 1000,
  rollingCountTimeoutMs: 10_000,
};

interface LogLine {
  level: number;
  msg: string;
  key: string;
  from: string;
  to: string;
}

function logCapture(): { logger: BreakerInterceptorOptions["logger"]; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as LogLine);
      cb();
    },
  });
  return { logger: pino({ level: "info" }, stream), lines };
}

function make(settings: Partial<BreakerSettings> = {}) {
  const { logger, lines } = logCapture();
  const b = createBreakerInterceptor({ settingsFor: () => ({ ...base, ...settings }), logger });
  return { b, lines };
}

interface Stub {
  calls: number;
  /** What next rejects with; undefined: it resolves "ok". */
  fail: unknown;
  next: Next;
}

/** A next that counts its calls and settles as told. */
function stub(): Stub {
  const s: Stub = {
    calls: 0,
    fail: undefined,
    next: () => {
      s.calls++;
      return s.fail === undefined ? Promise.resolve("ok") : Promise.reject(s.fail);
    },
  };
  return s;
}

function fakeTime(t: TestContext): void {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 1_000_000 });
}

async function settle(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return e;
  }
}

function assertCircuitOpen(e: unknown, key: string): MeshError {
  assert.ok(e instanceof MeshError, `expected a MeshError, got ${String(e)}`);
  assert.equal(e.code, "CIRCUIT_OPEN");
  assert.equal(e.retryable, false);
  assert.equal((e.details as { key: string }).key, key);
  return e;
}

const unhealthy = new MeshError("UNAVAILABLE", "down");

test("opens once the window has the volume and the failure share", async (t) => {
  fakeTime(t);
  const { b } = make();
  const s = stub();
  s.fail = unhealthy;
  // Below the volume threshold (4 calls), even 100% failures keep it closed.
  for (let i = 0; i < 3; i++) await settle(b.interceptor(ctx(), s.next));
  assert.equal(b.state("svc.v1"), "closed");
  await settle(b.interceptor(ctx(), s.next));
  assert.equal(b.state("svc.v1"), "open");
  assert.equal(s.calls, 4);
  b.close();
});

test("opens at (not only above) errorThresholdPercentage", async (t) => {
  fakeTime(t);
  const { b } = make();
  const s = stub();
  for (let i = 0; i < 3; i++) await b.interceptor(ctx(), s.next);
  s.fail = unhealthy;
  await settle(b.interceptor(ctx(), s.next)); // 1/4 = 25%
  await settle(b.interceptor(ctx(), s.next)); // 2/5 = 40%
  assert.equal(b.state("svc.v1"), "closed");
  await settle(b.interceptor(ctx(), s.next)); // 3/6 = 50%
  assert.equal(b.state("svc.v1"), "open");
  b.close();
});

test("a failure count threshold opens it whatever the ratio, and only counted failures count", async (t) => {
  fakeTime(t);
  const { b } = make({ failureThreshold: 3, volumeThreshold: 1000 });
  const s = stub();
  for (let i = 0; i < 50; i++) await b.interceptor(ctx(), s.next); // a healthy history: the ratio stays low
  s.fail = new MeshError("BAD_REQUEST", "caller's fault");
  for (let i = 0; i < 5; i++) await settle(b.interceptor(ctx(), s.next));
  assert.equal(b.state("svc.v1"), "closed", "ignored errors are not failures");
  s.fail = unhealthy;
  await settle(b.interceptor(ctx(), s.next));
  await settle(b.interceptor(ctx(), s.next));
  assert.equal(b.state("svc.v1"), "closed");
  await settle(b.interceptor(ctx(), s.next)); // the third failure, at 3/58 ≈ 5%
  assert.equal(b.state("svc.v1"), "open");
  assertCircuitOpen(await settle(b.interceptor(ctx(), s.next)), "svc.v1");
  b.close();
});

test("while open, calls fail at once with CIRCUIT_OPEN and never reach next", async (t) => {
  fakeTime(t);
  const { b } = make();
  const s = stub();
  s.fail = unhealthy;
  for (let i = 0; i < 4; i++) await settle(b.interceptor(ctx(), s.next));
  assert.equal(b.state("svc.v1"), "open");
  const before = s.calls;
  t.mock.timers.tick(400);
  for (let i = 0; i < 10; i++) {
    const e = assertCircuitOpen(await settle(b.interceptor(ctx(), s.next)), "svc.v1");
    assert.equal((e.details as { retryAfterMs: number }).retryAfterMs, 600);
  }
  assert.equal(s.calls, before, "next must not be called while open");
  b.close();
});

test("after resetTimeout one probe goes through; its success closes the breaker", async (t) => {
  fakeTime(t);
  const { b } = make();
  const s = stub();
  s.fail = unhealthy;
  for (let i = 0; i < 4; i++) await settle(b.interceptor(ctx(), s.next));
  t.mock.timers.tick(999);
  assert.equal(b.state("svc.v1"), "open");
  t.mock.timers.tick(1);
  assert.equal(b.state("svc.v1"), "half_open");

  // The probe hangs until we let it go; meanwhile other calls still fail fast.
  let release!: (v: unknown) => void;
  let probes = 0;
  const probe = b.interceptor(ctx(), () => {
    probes++;
    return new Promise((r) => (release = r));
  });
  const during = assertCircuitOpen(await settle(b.interceptor(ctx(), s.next)), "svc.v1");
  assert.equal((during.details as { retryAfterMs: number }).retryAfterMs, 0);
  assert.equal(probes, 1);
  release("fine");
  assert.equal(await probe, "fine");
  assert.equal(b.state("svc.v1"), "closed");
  s.fail = undefined;
  assert.equal(await b.interceptor(ctx(), s.next), "ok");
  b.close();
});

test("a failed probe re-opens the breaker for another resetTimeout", async (t) => {
  fakeTime(t);
  const { b } = make();
  const s = stub();
  s.fail = unhealthy;
  for (let i = 0; i < 4; i++) await settle(b.interceptor(ctx(), s.next));
  t.mock.timers.tick(1000);
  assert.equal(b.state("svc.v1"), "half_open");
  const calls = s.calls;
  assert.equal(await settle(b.interceptor(ctx(), s.next)), unhealthy);
  assert.equal(s.calls, calls + 1);
  assert.equal(b.state("svc.v1"), "open");
  assertCircuitOpen(await settle(b.interceptor(ctx(), s.next)), "svc.v1");
  t.mock.timers.tick(1000);
  assert.equal(b.state("svc.v1"), "half_open");
  b.close();
});

test("the caller's own errors never open it, and reach the caller as they are", async (t) => {
  fakeTime(t);
  const { b } = make({ volumeThreshold: 1 });
  for (const code of ["BAD_REQUEST", "FORBIDDEN", "UNAUTHENTICATED", "RATE_LIMITED", "NOT_FOUND", "CIRCUIT_OPEN"] as const) {
    const s = stub();
    s.fail = new MeshError(code, code);
    for (let i = 0; i < 30; i++) assert.equal(await settle(b.interceptor(ctx(), s.next)), s.fail);
    assert.equal(s.calls, 30);
  }
  // A cancelled call, and a request that never left this process, say nothing about the target.
  const ac = new AbortController();
  ac.abort();
  const cancelled = stub();
  cancelled.fail = new MeshError("TIMEOUT", "cancelled", { retryable: false });
  for (let i = 0; i < 10; i++) await settle(b.interceptor(ctx("svc.v1", { signal: ac.signal }), cancelled.next));
  const unsent = stub();
  unsent.fail = new MeshError("UNAVAILABLE", "connection closed", { details: { neverSent: true } });
  for (let i = 0; i < 10; i++) await settle(b.interceptor(ctx(), unsent.next));
  assert.equal(b.state("svc.v1"), "closed");
  b.close();
});

test("failures that mean the target is unhealthy count, and reach the caller as they are", async (t) => {
  fakeTime(t);
  const { b } = make({ volumeThreshold: 1 });
  const errors: Record<string, unknown> = {
    TIMEOUT: new MeshError("TIMEOUT", "slow"),
    NO_RESPONDERS: new MeshError("NO_RESPONDERS", "nobody"),
    UNAVAILABLE: new MeshError("UNAVAILABLE", "full"),
    HANDLER_ERROR: new MeshError("HANDLER_ERROR", "threw"),
    BAD_RESPONSE: new MeshError("BAD_RESPONSE", "garbled"),
    plain: new TypeError("not a mesh error"),
  };
  for (const [name, error] of Object.entries(errors)) {
    const s = stub();
    s.fail = error;
    assert.equal(await settle(b.interceptor(ctx(name), s.next)), error, name);
    assert.equal(b.state(name), "open", name);
    assert.equal(breakerIgnores(error, ctx(name)), false, name);
  }
  b.close();
});

test("transitions reach listeners once each, in order; a disposed listener hears no more", async (t) => {
  fakeTime(t);
  const { b, lines } = make();
  const seen: BreakerTransition[] = [];
  const early: BreakerTransition[] = [];
  b.onStateChange((tr) => seen.push(tr));
  const disposeEarly = b.onStateChange((tr) => early.push(tr));
  b.onStateChange(() => {
    throw new Error("a broken listener must not break calls");
  });
  const s = stub();
  s.fail = unhealthy;
  for (let i = 0; i < 6; i++) await settle(b.interceptor(ctx(), s.next)); // opens at the 4th, rejects 2
  assert.equal(early.length, 1);
  disposeEarly();
  t.mock.timers.tick(1000);
  s.fail = undefined;
  assert.equal(await b.interceptor(ctx(), s.next), "ok");

  assert.deepEqual(
    seen.map((x) => [x.key, x.from, x.to]),
    [
      ["svc.v1", "closed", "open"],
      ["svc.v1", "open", "half_open"],
      ["svc.v1", "half_open", "closed"],
    ],
  );
  assert.equal(early.length, 1, "the disposed listener heard nothing after dispose");
  assert.deepEqual(seen[0]!.stats, { failures: 4, successes: 0, rejects: 0, fires: 4 });
  assert.equal(seen[0]!.at, 1_000_000);
  assert.equal(seen[1]!.stats.rejects, 2);
  assert.equal(seen[1]!.at, 1_001_000);
  assert.equal(seen[2]!.stats.successes, 1);

  const transitions = lines.filter((l) => l.key === "svc.v1" && l.to !== undefined);
  assert.deepEqual(
    transitions.map((l) => [l.level, l.from, l.to]),
    [
      [40, "closed", "open"],
      [30, "open", "half_open"],
      [30, "half_open", "closed"],
    ],
  );
  assert.equal(lines.filter((l) => l.msg === "breaker state listener threw").length, 3);
  b.close();
});

test("disabled settings: a plain pass-through, settings read once per key", async () => {
  const { logger } = logCapture();
  let asked = 0;
  const b = createBreakerInterceptor({
    settingsFor: () => {
      asked++;
      return { ...base, enabled: false, volumeThreshold: 1 };
    },
    logger,
  });
  const s = stub();
  s.fail = unhealthy;
  for (let i = 0; i < 50; i++) assert.equal(await settle(b.interceptor(ctx(), s.next)), unhealthy);
  assert.equal(s.calls, 50);
  assert.equal(asked, 1);
  assert.equal(b.state("svc.v1"), undefined);
  b.close();
});

test("separate keys have separate breakers and settings", async (t) => {
  fakeTime(t);
  const { logger } = logCapture();
  const asked: string[] = [];
  const b = createBreakerInterceptor({
    settingsFor: (key) => {
      asked.push(key);
      return key === "strict" ? { ...base, volumeThreshold: 1 } : base;
    },
    logger,
  });
  const s = stub();
  s.fail = unhealthy;
  await settle(b.interceptor(ctx("strict"), s.next));
  await settle(b.interceptor(ctx("lenient"), s.next));
  assert.equal(b.state("strict"), "open");
  assert.equal(b.state("lenient"), "closed");
  assert.equal(b.state("never-called"), undefined);
  s.fail = undefined;
  assert.equal(await b.interceptor(ctx("lenient"), s.next), "ok");
  assertCircuitOpen(await settle(b.interceptor(ctx("strict"), s.next)), "strict");
  assert.deepEqual(asked, ["strict", "lenient"]);
  b.close();
});

test("refresh() (a new policy): a breaker whose settings changed starts afresh and says it closed; one whose settings held keeps its state", async (t) => {
  fakeTime(t);
  let settings: BreakerSettings = { ...base };
  const b = createBreakerInterceptor({ settingsFor: (key) => (key === "svc.v1" ? settings : { ...base }), logger: logCapture().logger });
  const seen: string[] = [];
  b.onStateChange((tr) => seen.push(`${tr.key} ${tr.from}→${tr.to}`));
  const s = stub();
  s.fail = unhealthy;
  for (let i = 0; i < 4; i++) await settle(b.interceptor(ctx(), s.next));
  for (let i = 0; i < 4; i++) await settle(b.interceptor(ctx("other.v1"), s.next));
  assert.equal(b.state("svc.v1"), "open");
  assert.equal(b.state("other.v1"), "open");
  settings = { ...base, volumeThreshold: 100 }; // a new policy, for svc only
  b.refresh();
  assert.equal(b.state("svc.v1"), undefined);
  assert.equal(b.state("other.v1"), "open", "settings unchanged: still open");
  assert.deepEqual(seen, ["svc.v1 closed→open", "other.v1 closed→open", "svc.v1 open→closed"]);
  const before = s.calls;
  assertCircuitOpen(await settle(b.interceptor(ctx("other.v1"), s.next)), "other.v1");
  assert.equal(s.calls, before, "the open breaker still fails fast");
  for (let i = 0; i < 20; i++) await settle(b.interceptor(ctx(), s.next));
  assert.equal(b.state("svc.v1"), "closed", "the new threshold holds");
  assert.equal(s.calls, before + 20, "nothing to svc was refused after the refresh");
  b.close();
});

test("close() clears every opossum timer; later calls pass straight through", async (t) => {
  // Real timers, watched: every timer opossum starts must be cleared by close().
  const live = new Set<unknown>();
  const g = globalThis as unknown as Record<string, (...a: unknown[]) => unknown>;
  const saved = { setTimeout: g.setTimeout!, setInterval: g.setInterval!, clearTimeout: g.clearTimeout!, clearInterval: g.clearInterval! };
  const fromOpossum = () => /[\\/]opossum[\\/]/.test(new Error().stack ?? "");
  g.setTimeout = (fn: unknown, ms: unknown, ...rest: unknown[]) => {
    const h = saved.setTimeout((...a: unknown[]) => {
      live.delete(h);
      (fn as (...a: unknown[]) => void)(...a);
    }, ms, ...rest);
    if (fromOpossum()) live.add(h);
    return h;
  };
  g.setInterval = (...a: unknown[]) => {
    const h = saved.setInterval(...a);
    if (fromOpossum()) live.add(h);
    return h;
  };
  g.clearTimeout = (h: unknown) => {
    live.delete(h);
    return saved.clearTimeout(h);
  };
  g.clearInterval = (h: unknown) => {
    live.delete(h);
    return saved.clearInterval(h);
  };
  t.after(() => Object.assign(g, saved));

  const { b } = make({ volumeThreshold: 1, resetTimeoutMs: 60_000 });
  const s = stub();
  s.fail = unhealthy;
  await settle(b.interceptor(ctx("a"), s.next)); // opens: a reset timer
  s.fail = undefined;
  await b.interceptor(ctx("b"), s.next);
  assert.equal(b.state("a"), "open");
  assert.ok(live.size >= 3, `expected opossum timers (2 bucket intervals, 1 reset timer), saw ${live.size}`);
  b.close();
  assert.equal(live.size, 0, "close() left opossum timers behind");
  assert.equal(b.state("a"), undefined);
  s.fail = unhealthy;
  const calls = s.calls;
  assert.equal(await settle(b.interceptor(ctx("a"), s.next)), unhealthy);
  assert.equal(s.calls, calls + 1);
  assert.equal(live.size, 0, "no breaker is made after close()");
});

test("full of open breakers: a new key lets the oldest open one go, and states() (the gauge) no longer lists it", async (t) => {
  fakeTime(t);
  const { b } = make({ volumeThreshold: 1, resetTimeoutMs: 60_000 });
  const s = stub();
  s.fail = unhealthy;
  const keys = Array.from({ length: MAX_PER_TARGET }, (_, i) => `svc-${i}.v1`);
  for (const key of keys) await settle(b.interceptor(ctx(key), s.next));
  assert.ok(keys.every((k) => b.state(k) === "open"), "every kept breaker is open");
  await settle(b.interceptor(ctx("newcomer.v1"), s.next));
  const listed = new Map(b.states());
  assert.equal(listed.size, MAX_PER_TARGET);
  assert.equal(listed.has("svc-0.v1"), false, "the breaker let go is not reported open by the gauge");
  assert.equal(b.state("svc-0.v1"), undefined);
  assert.equal(listed.get("svc-1.v1"), "open", "the other open breakers stay open");
  assert.equal(listed.get("newcomer.v1"), "open");
  // The breaker let go is gone for good: its next call starts a fresh, closed breaker.
  s.fail = undefined;
  assert.equal(await b.interceptor(ctx("svc-0.v1"), s.next), "ok");
  assert.equal(b.state("svc-0.v1"), "closed");
  b.close();
});
