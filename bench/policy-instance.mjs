// Child process of policy-propagation.mjs: one service instance following the live
// policy (the default KV watch of connect()).
//   node bench/policy-instance.mjs <natsUrl> <index>   (forked with an IPC channel)
// Messages out: { ready: { revision } } once serving; { revision, at } on every change
// of the policy in force, `at` being the epoch time in ms (sub-ms resolution) at which
// this process's mesh put it in force. Message in: "stop" → closes and exits 0.
import { connect } from "svcmesh";
import { claimSchema, decide, decisionSchema } from "./contract.mjs";
import { benchIdentity } from "./identities.mjs";

const [url, index] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
process.on("disconnect", () => process.exit(1)); // never outlive the parent

const mesh = await connect({ servers: url, name: "payments", seed: benchIdentity("payments").seed });
// Hooked on the change itself (PolicyState.onChange), not polled: `at` is when the
// new document became the one this instance's calls are checked against.
mesh.policy.onChange((p) => process.send({ revision: p?.revision ?? 0, at: now(), index: Number(index) }));
await mesh.serve({
  name: "payments",
  version: "2.1.0",
  endpoints: { reimburse: { input: claimSchema, output: decisionSchema, handler: async (c) => decide(c) } },
});

process.on("message", async (m) => {
  if (m === "stop") {
    await mesh.close();
    process.exit(0);
  }
});
process.send({ ready: { revision: mesh.policy.inForce?.revision ?? 0 } });
