// Row "policy": the "resilience" row plus identity and policy. Both processes connect
// with an nkey seed (so every call carries a Mesh-Token signed for payments, which the
// callee verifies against the policy's registered key), and both put the same policy
// document in force in code: payments allows only claims, and payments.reimburse
// requires the role CLAIMS_CLERK and the data class PII, both of which the policy gives
// claims. So the caller checks the policy before sending, and the callee verifies the
// token and checks the policy again, on every call.
//
// The bench server has no JetStream (no KV bucket to follow), so the policy is set in
// code with mesh.policy.set and the KV watch is off (`policy: { watch: false }`): that
// keeps anything from replacing the document mid-run. The seeds are derived from the
// identity names (bench/identities.mjs), since the row processes get only the URL. The
// NATS server has no authorization block, so it accepts the nkey connection as is.
import { connect, parsePolicy } from "svcmesh";
import { TIMEOUT_MS, claim } from "../contract.mjs";
import { resilientPayments } from "./resilience.mjs";
import { benchIdentity, benchPolicyText } from "../identities.mjs";

const REVISION = 1;

function policyDocument() {
  const parsed = parsePolicy(benchPolicyText());
  if (!parsed.ok) throw new Error(`bench policy does not parse: ${JSON.stringify(parsed.errors)}`);
  return parsed.policy;
}

async function meshWithPolicy(url, name) {
  const mesh = await connect({ servers: url, name, seed: benchIdentity(name).seed, policy: { watch: false }, trace: false, audit: { enabled: false } });
  mesh.policy.set(policyDocument(), REVISION);
  return mesh;
}

export async function serve(url) {
  const mesh = await meshWithPolicy(url, "payments");
  await mesh.serve(resilientPayments);
  return { close: () => mesh.close() };
}

export async function caller(url) {
  const mesh = await meshWithPolicy(url, "claims");
  const payments = mesh.client("payments@^2");
  const opts = { timeoutMs: TIMEOUT_MS };
  // One call before measuring that must pass the callee's checks: a policy or token
  // mistake fails the row at once instead of showing up as 100% errors.
  await payments.call("reimburse", claim, opts);
  return {
    call: () => payments.call("reimburse", claim, opts),
    close: () => mesh.close(),
  };
}
