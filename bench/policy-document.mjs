// The policy document of the bench (rows "policy", "everything", "everythingSdk", "rules-N" and
// policy-propagation.mjs): identities for claims and payments, payments allows only
// claims, and payments.reimburse needs a role and a data class that claims holds.
import { stringify } from "yaml";
import { benchIdentity } from "./identities.mjs";

/** Endpoint rules per filler service (the first batch goes on payments itself). */
const RULES_PER_SERVICE = 100;

/**
 * The document as YAML text.
 * - `variant` (> 0) adds an unrelated service entry, so that the propagation script can
 *   apply 20 different documents; the rules for claims → payments stay the same.
 * - `rules` (≥ 1) makes the document hold that many endpoint rules (allow list, roles
 *   and data class each), payments.reimburse being one: the others are fillers on
 *   payments and on services rules-1, rules-2, ... (100 each), each filler service with
 *   its own identity and role, so the document grows in identities too (1 per 100
 *   rules). None of the fillers is ever called: they are what a check must not slow on.
 */
export function benchPolicyText({ variant = 0, rules = 1 } = {}) {
  const identities = {
    claims: { key: benchIdentity("claims").publicKey, roles: ["CLAIMS_CLERK"], clearances: ["PII"] },
    payments: { key: benchIdentity("payments").publicKey, roles: ["PAYER"] },
  };
  const reimburse = { roles: ["CLAIMS_CLERK"], dataClass: "PII" };
  const services = { payments: { allow: ["claims"], endpoints: { reimburse } } };
  for (let n = 1; n < rules; n++) {
    const batch = Math.floor(n / RULES_PER_SERVICE);
    const owner = batch === 0 ? "payments" : `rules-${batch}`;
    if (batch > 0 && !services[owner]) {
      identities[owner] = { key: benchIdentity(owner).publicKey, roles: [`ROLE_${batch}`], clearances: ["PII"] };
      services[owner] = { allow: [owner, "claims"], endpoints: {} };
    }
    const [caller, role] = batch === 0 ? ["claims", "CLAIMS_CLERK"] : [owner, `ROLE_${batch}`];
    services[owner].endpoints[`filler-${n}`] = { allow: [caller], roles: [role], dataClass: "PII" };
  }
  if (variant) services[`audit-${variant}`] = { allow: ["payments"] };
  return stringify({ version: 1, identities, services });
}
