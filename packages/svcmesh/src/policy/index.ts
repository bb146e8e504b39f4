// The policy document as library code: schema, parsing with positions, diffs,
// authorization decisions and settings (pure), and the KV-backed store with live reload (store.ts).
export {
  ANY,
  POLICY_VERSION,
  AllowList,
  PolicyDocumentSchema,
  PolicyIdentity,
  PolicyDefaults,
  PolicyService,
  PolicyEndpoint,
  isNkeyUserPublicKey,
  policyJsonSchema,
  policySchema,
  policyWarnings,
} from "./schema.js";
export type { PolicyDocument, PolicySchemaOptions, PolicyWarning } from "./schema.js";
export { formatPath, formatPolicyErrors, parsePolicy } from "./parse.js";
export type { PolicyError, PolicyParseResult } from "./parse.js";
export { diffPolicies, formatDiff } from "./diff.js";
export type { PolicyChange } from "./diff.js";
export { callGrants, compileAuthorizer, rateLimitFor, settingsFor } from "./authorize.js";
export type { AuthDecision, Authorizer, CallGrant, PolicyEndpointSettings, PolicyServiceSettings } from "./authorize.js";
export {
  applyPolicy,
  getPolicy,
  watchPolicy,
  policySha,
  POLICY_BUCKET,
  POLICY_KEY,
  POLICY_HISTORY,
  POLICY_EVENT_SERVICE,
  POLICY_APPLIED_SUBJECT,
} from "./store.js";
export type { AppliedPolicy, ApplyPolicyOptions, PolicyChangeHandler, PolicyWatcher, StoredPolicy } from "./store.js";
