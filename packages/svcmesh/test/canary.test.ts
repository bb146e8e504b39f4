// Canary traffic: the policy's weights between running versions, changeable live.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect, type Mesh, parsePolicy } from "svcmesh";
import { type NatsServer, startNatsServer } from "../../../test/helpers/nats-server.ts";

let server: NatsServer;
const open: Mesh[] = [];

function policyWith(traffic: Record<string, number>) {
  const text = `version: 1\nservices:\n  payments:\n    traffic: { ${Object.entries(traffic).map(([v, w]) => `"${v}": ${w}`).join(", ")} }\n`;
  const parsed = parsePolicy(text);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  return parsed.policy;
}

before(async () => {
  server = await startNatsServer();
  for (const version of ["2.1.0", "2.2.0", "1.0.0"]) {
    const host = await connect({ servers: server.url, name: `host-${version}` });
    open.push(host);
    await host.serve({ name: "payments", version, endpoints: { which: { handler: (_r, ctx) => ctx.version } } });
  }
});

after(async () => {
  await Promise.allSettled(open.map((m) => m.close()));
  await server.stop();
});

async function split(caller: Mesh, target: string, n: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const batch = 250;
  for (let done = 0; done < n; done += batch) {
    const versions = await Promise.all(Array.from({ length: Math.min(batch, n - done) }, () => caller.call<string>(target, "which")));
    for (const v of versions) counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  return counts;
}

test("over 5,000 calls the split follows the weights within ±3 points, and a new weighting applies live", async () => {
  const caller = await connect({ servers: server.url, name: "canary-caller", policy: { watch: false } });
  open.push(caller);
  caller.policy.set(policyWith({ "2.1.0": 90, "2.2.0": 10 }), 1);
  const first = await split(caller, "payments@^2", 5000);
  const share = (c: Map<string, number>, v: string) => (100 * (c.get(v) ?? 0)) / 5000;
  console.log(`90/10 → ${share(first, "2.1.0").toFixed(1)} / ${share(first, "2.2.0").toFixed(1)}`);
  assert.ok(Math.abs(share(first, "2.1.0") - 90) <= 3, `2.1.0 got ${share(first, "2.1.0")}%`);
  assert.ok(Math.abs(share(first, "2.2.0") - 10) <= 3, `2.2.0 got ${share(first, "2.2.0")}%`);
  assert.equal(first.get("1.0.0"), undefined, "a version outside the target's range never takes part");

  caller.policy.set(policyWith({ "2.1.0": 50, "2.2.0": 50 }), 2);
  const second = await split(caller, "payments@^2", 5000);
  console.log(`50/50 → ${share(second, "2.1.0").toFixed(1)} / ${share(second, "2.2.0").toFixed(1)}`);
  assert.ok(Math.abs(share(second, "2.2.0") - 50) <= 3, `2.2.0 got ${share(second, "2.2.0")}%`);

  caller.policy.set(undefined);
  const none = await split(caller, "payments@2.1.0", 200);
  assert.deepEqual([...none.keys()], ["2.1.0"], "without weights a pinned target still goes to its version");
});
