// The policy's settings override code, live: callee rate limits and bulkheads on a
// running instance, and the caller's per-endpoint timeout and idempotency.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect, type Mesh, parsePolicy, type PolicyDocument } from "svcmesh";
import { meshFailure } from "../../../test/helpers/mesh.ts";
import { type NatsServer, sleep, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
let host: Mesh;
let caller: Mesh;
let runs = 0;

function doc(text: string): PolicyDocument {
  const parsed = parsePolicy(text);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  return parsed.policy;
}

before(async () => {
  server = await startNatsServer();
  host = await connect({ servers: server.url, name: "ledger-host", policy: { watch: false } });
  caller = await connect({ servers: server.url, name: "clerk", policy: { watch: false }, defaults: { retry: { attempts: 3, backoffMs: 5, maxBackoffMs: 10 } } });
  await host.serve({
    name: "ledger",
    version: "1.0.0",
    endpoints: {
      post: { handler: () => ++runs },
      slow: { handler: async () => { runs++; await sleep(300); return "late"; } },
    },
  });
});

after(async () => {
  await caller.close();
  await host.close();
  await server.stop();
});

test("rate limits and a bulkhead from the policy apply to a running instance, and go away with it", async () => {
  assert.equal(await caller.call("ledger", "post"), 1, "no limits in code");
  const limited = doc(`version: 1\nservices:\n  ledger:\n    rateLimits: { "*": { rps: 1, burst: 2 } }\n`);
  host.policy.set(limited, 1); // takes effect on the running instance at once
  // The caller does not know the policy: what refuses is the callee.
  const results = [];
  for (let i = 0; i < 4; i++) results.push(await caller.call("ledger", "post").then(() => "ok", (e: { code: string }) => e.code));
  assert.deepEqual(results, ["ok", "ok", "RATE_LIMITED", "RATE_LIMITED"]);
  host.policy.set(doc(`version: 1\nservices:\n  ledger:\n    endpoints:\n      slow: { maxConcurrent: 1 }\n`), 2);
  const both = await Promise.all([0, 1].map(() => caller.call("ledger", "slow", undefined, { retry: { attempts: 1 } }).then(() => "ok", (e: { code: string }) => e.code)));
  assert.deepEqual(both.sort(), ["UNAVAILABLE", "ok"], "the policy's bulkhead of 1");
  host.policy.set(undefined);
  assert.equal(typeof (await caller.call("ledger", "post")), "number", "limits gone with the policy");
});

test("the policy's endpoint timeout and idempotency reach the caller: only an idempotent endpoint is retried after a timeout", async () => {
  const runsOf = async (idempotent: boolean) => {
    caller.policy.set(doc(`version: 1\nservices:\n  ledger:\n    retry: { attemptTimeoutMs: 60 }\n    endpoints:\n      slow: { timeoutMs: 250, idempotent: ${idempotent} }\n`));
    const before = runs;
    const started = Date.now();
    const e = await meshFailure(caller.call("ledger", "slow"));
    assert.equal(e.code, "TIMEOUT");
    assert.ok(Date.now() - started < 400, "the policy's 250 ms, not the 2 s default");
    await sleep(350); // let the slow handlers finish counting
    return runs - before;
  };
  assert.ok((await runsOf(true)) >= 2, "idempotent: retried after the 60 ms attempt timed out");
  assert.equal(await runsOf(false), 1, "not idempotent: run once");
  caller.policy.set(undefined);
});
