// The policy document as library code: schema, parsing with positions, diffs,
// authorization decisions and settings. Pure: storage and live reload live elsewhere.
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
