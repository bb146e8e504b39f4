// Row "policy": the "resilience" row plus identity and policy. Both processes connect
// with an nkey seed (so every call carries a Mesh-Token signed for payments, which the
// callee verifies against the policy's registered key), and both put the same policy
// document in force in code: payments allows only claims, and payments.reimburse
// requires the role CLAIMS_CLERK and the data class PII, both of which the policy gives
// claims. So the caller checks the policy before sending, and the callee verifies the
// token and checks the policy again, on every call.
//
// Options from the row table (rows/index.mjs):
//   { traceRate }  rows "everything" and "everythingSdk": tracing on at that rate with
//                  the OTel SDK registered in both processes (bench/otel.mjs), as the
//                  tracing rows do.
//   { rootSampling: "mesh" }  row "everything": the mesh decides which calls start a
//                  traced trace (connect's trace.rootSampling), as Moleculer's own 1%
//                  sampling does in the moleculerFt row; the SDK has its default sampler
//                  (parent-based, every root recorded) and records the 1% kept. Without
//                  it ("everythingSdk") the SDK's ratio sampler decides on every call.
//   { rules }      rows "rules-N": the document holds N endpoint rules (policy-document.mjs).
//
// The bench server has no JetStream (no KV bucket to follow), so the policy is set in
// code with mesh.policy.set and the KV watch is off (`policy: { watch: false }`): that
// keeps anything from replacing the document mid-run. The seeds are derived from the
// identity names (bench/identities.mjs), since the row processes get only the URL. The
// NATS server has no authorization block, so it accepts the nkey connection as is.
import { connect, parsePolicy } from "svcmesh";
import { TIMEOUT_MS, claim } from "../contract.mjs";
import { benchIdentity } from "../identities.mjs";
import { registerTracing } from "../otel.mjs";
import { benchPolicyText } from "../policy-document.mjs";
import { resilientPayments } from "./resilience.mjs";

const REVISION = 1;

function policyDocument(rules) {
  const parsed = parsePolicy(benchPolicyText({ rules }));
  if (!parsed.ok) throw new Error(`bench policy does not parse: ${JSON.stringify(parsed.errors)}`);
  return parsed.policy;
}

/** A mesh with the bench policy in force; close() also shuts the OTel SDK down if it was registered. */
async function meshWithPolicy(url, name, { traceRate, rules, rootSampling } = {}) {
  const shutdownTracing = traceRate ? registerTracing(rootSampling === "mesh" ? 1 : traceRate) : undefined;
  const mesh = await connect({
    servers: url,
    name,
    seed: benchIdentity(name).seed,
    policy: { watch: false },
    trace: traceRate ? { sampleRate: traceRate, ...(rootSampling ? { rootSampling } : {}) } : false,
    audit: { enabled: false },
  });
  mesh.policy.set(policyDocument(rules), REVISION);
  const close = async () => {
    await mesh.close();
    await shutdownTracing?.();
  };
  return { mesh, close };
}

export async function serve(url, options) {
  const { mesh, close } = await meshWithPolicy(url, "payments", options);
  await mesh.serve(resilientPayments);
  return { close };
}

export async function caller(url, options) {
  const { mesh, close } = await meshWithPolicy(url, "claims", options);
  const payments = mesh.client("payments@^2");
  const opts = { timeoutMs: TIMEOUT_MS };
  // One call before measuring that must pass the callee's checks: a policy or token
  // mistake fails the row at once instead of showing up as 100% errors.
  await payments.call("reimburse", claim, opts);
  return {
    call: () => payments.call("reimburse", claim, opts),
    close,
  };
}
