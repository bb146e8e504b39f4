// Issue #6, a slow and flapping service: a service process alternates between healthy,
// slow (past the caller's timeout) and failing, in bounded phases, under a bounded load
// from a caller with its breaker on. Calls time out with TIMEOUT, the breaker opens in
// each bad phase (CIRCUIT_OPEN fast-fails, circuit_open published) and closes after each
// recovery (circuit_close published); calls succeed afterwards. The caller's pending
// calls drop to 0, and its timers and heap do not grow with the calls it made.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { connect, type Mesh } from "svcmesh";
import { type FixtureProcess, startFixture } from "../../packages/svcmesh/test/fixtures/process.ts";
import { type CallOutcome, figure, LOST, runLoad } from "../helpers/load.ts";
import { type NatsServer, sleep, startNatsServer } from "../helpers/nats-server.ts";

const SERVICE = "flappy";
const TIMEOUT_MS = 200;
/** Slow answers come this long after the request: always past the caller's timeout. */
const SLOW_MS = 500;
// failureThreshold opens it early in a bad phase, without waiting for the healthy
// phase's successes to leave the rolling window (which the ratio alone would).
const BREAKER = { volumeThreshold: 10, errorThresholdPercentage: 50, failureThreshold: 8, resetTimeoutMs: 300, rollingCountTimeoutMs: 1000 };

interface Phase {
  mode: "healthy" | "slow" | "failing";
  ms: number;
}
/** One short bad phase first, so the failure paths' one-time allocations happen before the baseline. */
const WARM_UP: Phase[] = [
  { mode: "healthy", ms: 500 },
  { mode: "failing", ms: 800 },
  { mode: "healthy", ms: 1000 },
];
/** Each bad phase is followed by a healthy one long enough to close the breaker (reset 300 ms + a probe). */
const PHASES: Phase[] = [
  { mode: "slow", ms: 1200 },
  { mode: "healthy", ms: 1500 },
  { mode: "failing", ms: 1200 },
  { mode: "healthy", ms: 1500 },
  { mode: "slow", ms: 1200 },
  { mode: "healthy", ms: 1500 },
];
const BAD = new Set(["slow", "failing"]);
/** Bounds on the load: whichever comes first. */
const MAX_CALLS = 12_000;
const CONCURRENCY = 8;
const PACE_MS = 10;
/** Allowed growth of the caller's active timers and handles (a reconnect, a late flush). */
const RESOURCE_SLACK = 3;
/** Allowed heap growth after a full GC: a per-call leak of even 1 KB over the run would exceed it. */
const HEAP_SLACK_MB = 4;

// A full GC before each heap reading, so the comparison is of live objects, not garbage.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let server: NatsServer;
let service: FixtureProcess;
let caller: Mesh;
let watcher: Mesh;

before(async () => {
  server = await startNatsServer({ jetstream: true });
  service = await startFixture("flappy-service.ts", [SERVICE, "1.0.0"], { NATS_URL: server.url });
  watcher = await connect({ servers: server.url, name: "flap-watcher" });
  caller = await connect({
    servers: server.url,
    name: "flap-caller",
    defaults: { timeoutMs: TIMEOUT_MS, retry: { attempts: 1 }, breaker: BREAKER },
  });
});

after(async () => {
  await caller?.close();
  await watcher?.close();
  await service?.stop("SIGKILL");
  await server?.stop();
});

interface PhaseRun extends Phase {
  startedAt: number;
  endedAt: number;
}

/** Puts the service in `phase`'s mode, keeps it there for its time. */
async function runPhase(phase: Phase): Promise<PhaseRun> {
  service.send(phase.mode === "slow" ? `slow ${SLOW_MS}` : phase.mode);
  await service.waitFor(/^mode /, 5000);
  const startedAt = Date.now();
  await sleep(phase.ms);
  return { ...phase, startedAt, endedAt: Date.now() };
}

/** Runs the phases one after another under a bounded load lasting as long as they do. */
async function flap(phases: Phase[]): Promise<{ outcomes: CallOutcome<string>[]; runs: PhaseRun[] }> {
  const load = runLoad<string>({
    total: MAX_CALLS,
    concurrency: CONCURRENCY,
    maxMs: phases.reduce((sum, p) => sum + p.ms, 0),
    paceMs: PACE_MS,
    settleWithinMs: TIMEOUT_MS + 2000,
    call: () => caller.call<string>(SERVICE, "ping"),
  });
  const runs: PhaseRun[] = [];
  for (const p of phases) runs.push(await runPhase(p));
  return { outcomes: await load, runs };
}

function resources(): { timers: number; handles: number } {
  const all = process.getActiveResourcesInfo();
  return { timers: all.filter((r) => r === "Timeout").length, handles: all.filter((r) => r !== "Timeout").length };
}

function heapMb(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

test("timeouts, breaker opens and closes with events, then calls succeed; the caller's pending calls, timers and heap stay bounded", async () => {
  const events: { type: string; at: number; target: string }[] = [];
  const consumer = await watcher.events.consume(
    { durable: "flap-breakers", types: ["circuit_open", "circuit_close"], services: [SERVICE] },
    (e) => void events.push({ type: e.type, at: e.at, target: e.target }),
  );

  // Warm up: routes, breaker, the events stream and every lazy timer exist before the baseline.
  assert.ok((await flap(WARM_UP)).outcomes.at(-1)?.ok, "the warm-up ends healthy");
  await sleep(1200); // one coalescing window: the warm-up's event windows are flushed
  const before = { ...resources(), heapMb: heapMb() };
  const startedAt = Date.now();

  const { outcomes, runs } = await flap(PHASES);

  // Let the breaker's last transition be stored and consumed, and the last event windows flush.
  const until = Date.now() + 5000;
  while (events.at(-1)?.type !== "circuit_close" && Date.now() < until) await sleep(50);
  await sleep(1200);
  const opened = events.filter((e) => e.type === "circuit_open" && e.at >= startedAt);
  const closed = events.filter((e) => e.type === "circuit_close" && e.at >= startedAt);
  const lastClose = closed.at(-1)?.at ?? Infinity;
  const codes = new Set(outcomes.filter((r) => !r.ok).map((r) => r.code));
  const recoveredCount = outcomes.filter((r) => r.startedAt > lastClose).length;
  const recoveredOk = outcomes.every((r) => r.startedAt <= lastClose || (r.ok && r.value === "pong"));
  const calls = figure("flapping", outcomes);
  // The call records are this test's memory, not the caller's: drop them before measuring.
  const sent = outcomes.splice(0).length;
  const pendingAfter = caller.callsInFlight;
  const afterwards = { ...resources(), heapMb: heapMb() };
  await consumer.stop();

  const heapGrowth = afterwards.heapMb - before.heapMb;
  console.log([
    calls,
    `breaker opened ${opened.length}× closed ${closed.length}×`,
    `pending calls ${pendingAfter}`,
    `timers ${before.timers}→${afterwards.timers}`,
    `handles ${before.handles}→${afterwards.handles}`,
    `heap ${heapGrowth >= 0 ? "+" : ""}${heapGrowth.toFixed(1)} MB`,
  ].join(", "));

  assert.ok(!codes.has(LOST), "every call settled by its deadline (plus slack)");
  for (const code of codes) assert.ok(["TIMEOUT", "UNAVAILABLE", "CIRCUIT_OPEN"].includes(code!), `unexpected failure code ${code}`);
  for (const code of ["TIMEOUT", "UNAVAILABLE", "CIRCUIT_OPEN"]) assert.ok(codes.has(code), `some calls failed with ${code}`);
  assert.ok(events.every((e) => e.target === `${SERVICE}.v1`), JSON.stringify(events));

  // Each bad phase opened the breaker, and the healthy phase after it closed it again.
  assert.ok(runs.filter((r) => BAD.has(r.mode)).length >= 3);
  for (const [k, phase] of runs.entries()) {
    if (!BAD.has(phase.mode)) continue;
    const recovery = runs[k + 1]!;
    assert.ok(opened.some((e) => e.at >= phase.startedAt && e.at <= phase.endedAt), `the breaker opened during ${phase.mode} phase ${k}`);
    assert.ok(closed.some((e) => e.at >= phase.endedAt && e.at <= recovery.endedAt), `the breaker closed in the healthy phase after phase ${k}`);
  }
  assert.equal(events.at(-1)?.type, "circuit_close", "the breaker ends closed");

  // After the last recovery every call succeeds.
  assert.ok(recoveredCount >= 10, `calls after the last recovery (${recoveredCount})`);
  assert.ok(recoveredOk, "every call after the recovery succeeds");

  // Bounded resources: nothing pending, no timers or handles per call, no heap growth per call.
  assert.equal(pendingAfter, 0, "no call is left waiting for a reply");
  assert.ok(afterwards.timers <= before.timers + RESOURCE_SLACK, `timers ${before.timers} → ${afterwards.timers}`);
  assert.ok(afterwards.handles <= before.handles + RESOURCE_SLACK, `handles ${before.handles} → ${afterwards.handles}`);
  assert.ok(heapGrowth < HEAP_SLACK_MB, `heap grew ${heapGrowth.toFixed(1)} MB over ${sent} calls`);
});
