// Issue #6, instance loss: three instances of a service run as processes and one is
// SIGKILLed during a bounded load, at a moment it is running calls of both kinds.
// Calls to the idempotent endpoint that were in flight on it are retried on a survivor;
// calls to the non-idempotent one fail with a code (never silently, never run twice);
// every later call succeeds on the survivors.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect, type Mesh } from "svcmesh";
import { type FixtureProcess, startFixture } from "../../packages/svcmesh/test/fixtures/process.ts";
import { figure, LOST, runLoad } from "../helpers/load.ts";
import { type NatsServer, startNatsServer } from "../helpers/nats-server.ts";

const SERVICE = "lossy";
/** Handlers take this long, so each instance always has calls in flight. */
const HANDLER_MS = 150;
/** An attempt whose reply never comes gives up after this; an idempotent call then retries. */
const ATTEMPT_TIMEOUT_MS = 800;
const CALL_TIMEOUT_MS = 3000;
/** A call still unsettled this long after its deadline is counted as lost. */
const SLACK_MS = 2000;
const TOTAL = 800;
const CONCURRENCY = 32;
/** The kill waits until this many calls have started, so the victim has served some. */
const KILL_FROM_CALL = 250;
/** If no moment with both kinds of call fresh on the victim came by this call, kill anyway. */
const KILL_AT_THE_LATEST = 600;
/** A run "fresh" on the victim started at most this long ago: it has ~100 ms of handler time left. */
const FRESH_MS = 50;

let server: NatsServer;
let caller: Mesh;
const instances: FixtureProcess[] = [];

interface Answer {
  instance: string;
  n: number;
}

before(async () => {
  server = await startNatsServer({ jetstream: true });
  // Pushed as each starts, so `after` stops them even if another one fails to start.
  await Promise.all([0, 1, 2].map(async () => instances.push(await startFixture("who-service.ts", [SERVICE, "1.0.0"], { NATS_URL: server.url }))));
  caller = await connect({
    servers: server.url,
    name: "loss-caller",
    defaults: { retry: { attempts: 3, backoffMs: 20, maxBackoffMs: 100, attemptTimeoutMs: ATTEMPT_TIMEOUT_MS } },
  });
});

after(async () => {
  await Promise.allSettled(instances.map((p) => p.stop("SIGKILL")));
  await caller?.close();
  await server?.stop();
});

const isIdempotent = (i: number) => i % 2 === 0;

/** The call numbers each process printed "ran <endpoint> <n>" for, by endpoint. */
function runsOf(p: FixtureProcess, endpoint: "work" | "charge"): number[] {
  const re = new RegExp(`^ran ${endpoint} (\\d+)$`);
  return p.lines.flatMap((l) => {
    const m = re.exec(l);
    return m ? [Number(m[1])] : [];
  });
}

test("SIGKILL of one of three instances mid-load: idempotent calls retried on a survivor, the others fail with TIMEOUT, none lost", async () => {
  const [victim, ...survivors] = instances as [FixtureProcess, FixtureProcess, FixtureProcess];
  const settled = new Set<number>();
  const victimRunning = new Map<number, number>(); // call number → when its "ran" line arrived
  let started = 0;
  let killedAt = 0;
  let killedOnCue = false;
  const kill = (onCue: boolean) => {
    if (killedAt) return;
    victim.child.kill("SIGKILL");
    killedAt = Date.now();
    killedOnCue = onCue;
  };
  victim.onLine((line) => {
    const m = /^ran (work|charge) (\d+)$/.exec(line);
    if (!m || killedAt) return;
    const now = Date.now();
    victimRunning.set(Number(m[2]), now);
    if (started < KILL_FROM_CALL) return;
    // Kill while the victim is surely in the middle of a call of each kind.
    const fresh = [...victimRunning].filter(([n, at]) => !settled.has(n) && now - at <= FRESH_MS).map(([n]) => n);
    if (fresh.some(isIdempotent) && fresh.some((n) => !isIdempotent(n))) kill(true);
  });

  const outcomes = await runLoad<Answer>({
    total: TOTAL,
    concurrency: CONCURRENCY,
    maxMs: 30_000,
    settleWithinMs: CALL_TIMEOUT_MS + SLACK_MS,
    call: (i) => {
      started = i + 1;
      if (i === KILL_AT_THE_LATEST) kill(false);
      const endpoint = isIdempotent(i) ? "work" : "charge";
      return caller.call<Answer>(SERVICE, endpoint, { n: i, ms: HANDLER_MS }, { timeoutMs: CALL_TIMEOUT_MS }).finally(() => settled.add(i));
    },
  });
  // Every line the processes printed is in once they are closed.
  await victim.closed;
  await Promise.all(survivors.map((s) => s.stop()));

  const failed = outcomes.filter((r) => !r.ok);
  const victimWork = new Set(runsOf(victim, "work"));
  const survivorWork = new Set(survivors.flatMap((s) => runsOf(s, "work")));
  const retriedOnSurvivor = outcomes.filter((r) => r.ok && victimWork.has(r.i) && r.value!.instance !== victim.id);
  console.log(figure("instance-loss", outcomes, {
    sent: ` (${outcomes.filter((r) => isIdempotent(r.i)).length} idempotent)`,
    failed: failed.every((r) => !isIdempotent(r.i)) ? " (all non-idempotent)" : " (SOME IDEMPOTENT)",
    extras: [`retried on survivor ${retriedOnSurvivor.length}`, `killed ${killedOnCue ? "with both kinds in flight" : "at the fallback call"}`],
  }));

  assert.equal(outcomes.length, TOTAL, "every call was made within the time bound");
  assert.ok(killedAt > 0, "the victim was killed");
  assert.deepEqual(failed.filter((r) => r.code === LOST), [], "every call settled by its deadline (plus slack)");
  for (const r of failed) {
    assert.equal(r.code, "TIMEOUT", `call ${r.i} failed with ${r.code}: ${String(r.error)}`);
    assert.ok(!isIdempotent(r.i), `idempotent call ${r.i} failed instead of being retried: ${String(r.error)}`);
  }
  for (const r of outcomes.filter((r) => r.ok)) {
    assert.equal(r.value!.n, r.i, "each answer is for its own call");
    assert.ok(instances.some((p) => p.id === r.value!.instance), `answered by a known instance (${r.value!.instance})`);
  }

  // The non-idempotent endpoint ran at most once per call; the victim's runs of it that
  // it did not answer are exactly failures (TIMEOUT, checked above), never successes elsewhere.
  const chargeRuns = instances.flatMap((p) => runsOf(p, "charge"));
  assert.equal(chargeRuns.length, new Set(chargeRuns).size, "no non-idempotent call ran twice");
  for (const n of runsOf(victim, "charge")) {
    const r = outcomes[n]!;
    assert.ok(!r.ok || r.value!.instance === victim.id, `non-idempotent call ${n} ran on the victim but was answered by another instance`);
  }

  assert.ok(killedOnCue, "the victim was killed while running calls of both kinds (not only at the fallback)");
  assert.ok(failed.length >= 1, "the non-idempotent call in flight on the victim failed with a code");
  assert.ok(retriedOnSurvivor.length >= 1, "an idempotent call in flight on the victim was answered by a survivor");
  for (const r of retriedOnSurvivor) assert.ok(survivorWork.has(r.i), `call ${r.i} ran again on a survivor`);

  const beforeKill = outcomes.filter((r) => r.ok && r.settledAt < killedAt);
  assert.ok(beforeKill.some((r) => r.value!.instance === victim.id), "the victim served calls before it was killed");
  // Allow the server a moment to notice the closed socket before it stops routing to it.
  const later = outcomes.filter((r) => r.startedAt > killedAt + 500);
  assert.ok(later.length >= 100, `enough calls after the kill (${later.length})`);
  assert.ok(later.every((r) => r.ok && r.value!.instance !== victim.id), "after the kill every call succeeds on a survivor");
  assert.equal(new Set(later.map((r) => r.value!.instance)).size, 2, "both survivors share the load");
});
