// Service identity: nkey key pairs and the signed Mesh-Token (public API, from index.ts).
export { type Identity, type SigningIdentity, identityFromSeed, isUserPublicKey, newIdentity, publicKeyObject } from "./keys.js";
export {
  DEFAULT_CLOCK_SKEW_MS,
  DEFAULT_MAX_TOKEN_LIFETIME_MS,
  DEFAULT_TOKEN_LIFETIME_MS,
  DEFAULT_VERIFY_CACHE_ENTRIES,
  type SignerOptions,
  TOKEN_HEADER,
  TOKEN_VERSION,
  type TokenClaims,
  type TokenSigner,
  type TokenVerifier,
  type VerifiedCaller,
  type VerifierOptions,
  createSigner,
  createVerifier,
  readTokenClaims,
  validIdentityName,
} from "./token.js";
