// Mesh-Token: the short-lived signed token a caller attaches to every request, bound
// to one target service, verified by the callee against the public keys the operator
// registered (never a key the caller sends).
//
// Format (one header value, ASCII, ~150 characters):
//
//   v1.<caller>.<target>.<issuedAtMs>.<expiresAtMs>.<keyHint>.<signature>
//
//   caller, target  service names ([a-z0-9-], so never a dot)
//   issuedAtMs,     Unix epoch milliseconds, decimal
//   expiresAtMs
//   keyHint         the first 12 characters of the signer's public nkey: only used to
//                   word a "key mismatch" error, never to choose a key
//   signature       ed25519 signature (64 bytes, base64url, 86 characters) by the
//                   caller's nkey over "svcmesh-token\n" + everything before the last dot
//
// The claims stay plain text so `nats sub` shows who called whom until when; only the
// signature needs base64url. Parsing is one split. The "svcmesh-token\n" prefix is
// signed but not sent: it keeps these signatures apart from anything else the same
// nkey signs (such as the NATS server's connect nonce).
//
// Both sides cache: a signer re-signs a target's token only when the cached one nears
// expiry, and a verifier remembers tokens it has verified until they expire, so a call
// costs a Map lookup on each side, not an ed25519 operation.
import { type KeyObject, sign as edSign, verify as edVerify } from "node:crypto";
import { MeshError } from "../errors.js";
import { validServiceName } from "../subjects.js";
import { identityFromSeed, publicKeyObject } from "./keys.js";
import { unsharedCopy } from "../unshared.js";

/** The request header that carries the token. */
export const TOKEN_HEADER = "Mesh-Token";

export const TOKEN_VERSION = "v1";
const DOMAIN = "svcmesh-token\n";
const KEY_HINT_LENGTH = 12;
const SIGNATURE_LENGTH = 86; // base64url of 64 bytes, unpadded

export const DEFAULT_TOKEN_LIFETIME_MS = 60_000;
export const DEFAULT_CLOCK_SKEW_MS = 5_000;
export const DEFAULT_MAX_TOKEN_LIFETIME_MS = 10 * 60_000;
export const DEFAULT_VERIFY_CACHE_ENTRIES = 10_000;
const MAX_SIGNER_TARGETS = 1_024;

/** Caller and target names follow service-name rules (they become subject tokens too). */
export function validIdentityName(name: string): boolean {
  return typeof name === "string" && validServiceName(name);
}
const validName = validIdentityName;

function unauthenticated(message: string): MeshError {
  return new MeshError("UNAUTHENTICATED", message);
}

// ---------------------------------------------------------------------------------
// Signing (caller side)

export interface SignerOptions {
  /** How long a token is valid, from its issue time. Default 60 s. */
  lifetimeMs?: number;
  /**
   * A cached token is replaced once it has less than this left to live, so a token
   * never expires while its request is in flight. Default a quarter of the lifetime.
   */
  refreshMarginMs?: number;
}

export interface TokenSigner {
  /** The caller name the tokens claim. */
  readonly name: string;
  /** The public key that verifies its tokens. */
  readonly publicKey: string;
  /**
   * The token for a call to `target` (a service name, without version). Cached per
   * target: a new signature only when the cached token nears expiry. `now` is the
   * clock in epoch ms (pass the one the call already read).
   */
  tokenFor(target: string, now?: number): string;
}

interface SignedEntry {
  token: string;
  issuedAt: number;
  refreshAt: number;
}

class Signer implements TokenSigner {
  readonly publicKey: string;
  private readonly privateKey: KeyObject;
  private readonly keyHint: string;
  private readonly lifetimeMs: number;
  private readonly refreshMarginMs: number;
  private readonly cache = new Map<string, SignedEntry>();

  constructor(readonly name: string, seed: string, options: SignerOptions) {
    if (!validName(name)) {
      throw new MeshError("BAD_REQUEST", `identity name ${JSON.stringify(name)} is not valid: [a-z0-9-], 1-64 characters, not trace/events/audit`);
    }
    const lifetimeMs = options.lifetimeMs ?? DEFAULT_TOKEN_LIFETIME_MS;
    if (!Number.isSafeInteger(lifetimeMs) || lifetimeMs <= 0) {
      throw new MeshError("BAD_REQUEST", `token lifetimeMs must be a positive whole number, got ${lifetimeMs}`);
    }
    const margin = options.refreshMarginMs ?? Math.floor(lifetimeMs / 4);
    if (!Number.isFinite(margin) || margin < 0 || margin >= lifetimeMs) {
      throw new MeshError("BAD_REQUEST", `token refreshMarginMs must be at least 0 and below lifetimeMs (${lifetimeMs}), got ${margin}`);
    }
    const identity = identityFromSeed(seed);
    this.publicKey = identity.publicKey;
    this.privateKey = identity.privateKey;
    this.keyHint = identity.publicKey.slice(0, KEY_HINT_LENGTH);
    this.lifetimeMs = lifetimeMs;
    this.refreshMarginMs = margin;
  }

  tokenFor(target: string, now: number = Date.now()): string {
    const cached = this.cache.get(target);
    // A clock that went back before the issue time gets a fresh token too.
    if (cached !== undefined && now < cached.refreshAt && now >= cached.issuedAt) return cached.token;
    return this.sign(target, now);
  }

  private sign(target: string, now: number): string {
    if (!validName(target)) {
      throw new MeshError("BAD_REQUEST", `cannot sign a token for target ${JSON.stringify(target)}: not a service name`);
    }
    const issuedAt = Math.floor(now);
    const expiresAt = issuedAt + this.lifetimeMs;
    const claims = `${TOKEN_VERSION}.${this.name}.${target}.${issuedAt}.${expiresAt}.${this.keyHint}`;
    const signature = edSign(null, Buffer.from(DOMAIN + claims, "latin1"), this.privateKey).toString("base64url");
    const token = `${claims}.${signature}`;
    if (this.cache.size >= MAX_SIGNER_TARGETS && !this.cache.has(target)) this.cache.clear();
    this.cache.set(target, { token, issuedAt, refreshAt: expiresAt - this.refreshMarginMs });
    return token;
  }
}

/** A token signer for identity `name` holding `seed` (an nkey user seed, "SU..."). */
export function createSigner(name: string, seed: string, options: SignerOptions = {}): TokenSigner {
  return new Signer(name, seed, options);
}

// ---------------------------------------------------------------------------------
// Parsing

export interface TokenClaims {
  caller: string;
  target: string;
  issuedAt: number;
  expiresAt: number;
  keyHint: string;
}

interface ParsedToken extends TokenClaims {
  signed: Buffer;
  signature: Buffer;
}

const DECIMAL_MS = /^[1-9][0-9]{0,15}$/;
const KEY_HINT = /^U[A-Z2-7]{11}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** The claims of a token, unverified, or a reason it is malformed. */
function parse(token: string): ParsedToken | string {
  if (token.length > 512) return `${token.length} characters, more than a token ever has`;
  const parts = token.split(".");
  if (parts.length !== 7) return `expected 7 dot-separated fields (v1.caller.target.issuedAt.expiresAt.keyHint.signature), got ${parts.length}`;
  const [version, caller, target, iat, exp, keyHint, sig] = parts as [string, string, string, string, string, string, string];
  if (version !== TOKEN_VERSION) return `unknown token version ${JSON.stringify(version.slice(0, 8))} (this mesh speaks ${TOKEN_VERSION})`;
  if (!validName(caller)) return `caller ${JSON.stringify(caller.slice(0, 64))} is not a service name`;
  if (!validName(target)) return `target ${JSON.stringify(target.slice(0, 64))} is not a service name`;
  if (!DECIMAL_MS.test(iat) || !DECIMAL_MS.test(exp)) return "issue and expiry times must be epoch milliseconds";
  if (!KEY_HINT.test(keyHint)) return "key hint is not the start of a user public key";
  if (sig.length !== SIGNATURE_LENGTH || !BASE64URL.test(sig)) return `signature must be ${SIGNATURE_LENGTH} base64url characters`;
  const issuedAt = Number(iat);
  const expiresAt = Number(exp);
  if (!Number.isSafeInteger(issuedAt) || !Number.isSafeInteger(expiresAt)) return "issue and expiry times out of range";
  const signature = Buffer.from(sig, "base64url");
  if (signature.length !== 64) return "signature is not 64 bytes";
  const signed = Buffer.from(DOMAIN + token.slice(0, token.length - SIGNATURE_LENGTH - 1), "latin1");
  return { caller, target, issuedAt, expiresAt, keyHint, signed, signature };
}

/** The claims a token makes, NOT verified (for logs and tools), or undefined if malformed. */
export function readTokenClaims(token: string): TokenClaims | undefined {
  const p = parse(token);
  if (typeof p === "string") return undefined;
  return { caller: p.caller, target: p.target, issuedAt: p.issuedAt, expiresAt: p.expiresAt, keyHint: p.keyHint };
}

// ---------------------------------------------------------------------------------
// Verifying (callee side)

export interface VerifierOptions {
  /** Registered identities: caller name → public nkey ("U..."). Only these are trusted. */
  keys: ReadonlyMap<string, string>;
  /** The service doing the verifying: tokens must name it as target. */
  service: string;
  /** Clock difference tolerated between caller and callee. Default 5 s. */
  clockSkewMs?: number;
  /** Tokens claiming a longer life than this are refused. Default 10 min. */
  maxLifetimeMs?: number;
  /** Most verified tokens remembered. Default 10,000. */
  maxCacheEntries?: number;
}

export interface VerifiedCaller {
  /** The authenticated caller name: a registered identity whose key signed the token. */
  readonly caller: string;
  /** Until when (epoch ms, skew included) this verification holds. */
  readonly validUntil: number;
}

export interface TokenVerifier {
  readonly service: string;
  /**
   * The caller a token authenticates, or throws MeshError UNAUTHENTICATED saying why.
   * A token verified before is a Map lookup until it expires.
   */
  verify(token: string | undefined, now?: number): VerifiedCaller;
  /**
   * Replaces the registered keys. If any key was added, changed or removed, every
   * cached verification is forgotten; the same keys again keep the cache. An invalid
   * key set throws BAD_REQUEST and the old keys stay.
   */
  updateKeys(keys: ReadonlyMap<string, string>): void;
  /** How many verified tokens are remembered now. */
  readonly cacheSize: number;
}

interface RegisteredKey {
  publicKey: string;
  hint: string;
  key: KeyObject;
}

function registeredKeys(keys: ReadonlyMap<string, string>): Map<string, RegisteredKey> {
  const out = new Map<string, RegisteredKey>();
  for (const [name, publicKey] of keys) {
    if (!validName(name)) throw new MeshError("BAD_REQUEST", `identity name ${JSON.stringify(name)} is not a valid service name`);
    out.set(name, { publicKey, hint: publicKey.slice(0, KEY_HINT_LENGTH), key: publicKeyObject(publicKey, `identity ${JSON.stringify(name)}`) });
  }
  return out;
}

function sameKeys(a: ReadonlyMap<string, RegisteredKey>, b: ReadonlyMap<string, RegisteredKey>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, k] of a) if (b.get(name)?.publicKey !== k.publicKey) return false;
  return true;
}

function shortKey(key: string): string {
  return key.slice(0, KEY_HINT_LENGTH) + "…";
}

interface RecentEntry {
  token: string;
  verified: VerifiedCaller;
}

const RECENT_SLOTS = 256;

/** A slot from three signature characters (base64url, 6 random bits each). */
function recentSlot(token: string): number {
  const n = token.length;
  return ((token.charCodeAt(n - 3) << 6) ^ token.charCodeAt(n - 4) ^ (token.charCodeAt(n - 5) << 3)) & (RECENT_SLOTS - 1);
}

class Verifier implements TokenVerifier {
  private keys: Map<string, RegisteredKey>;
  private readonly cache = new Map<string, VerifiedCaller>();
  /** Front of `cache`: most recently used token per slot (a recent token may have left `cache`; it is still valid). */
  private readonly recent: Array<RecentEntry | undefined> = new Array<RecentEntry | undefined>(RECENT_SLOTS).fill(undefined);
  private readonly clockSkewMs: number;
  private readonly maxLifetimeMs: number;
  private readonly maxEntries: number;
  private nextSweep = 0;

  constructor(readonly service: string, options: VerifierOptions) {
    if (!validName(service)) throw new MeshError("BAD_REQUEST", `verifier service ${JSON.stringify(service)} is not a service name`);
    this.clockSkewMs = nonNegative("clockSkewMs", options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS);
    this.maxLifetimeMs = nonNegative("maxLifetimeMs", options.maxLifetimeMs ?? DEFAULT_MAX_TOKEN_LIFETIME_MS);
    this.maxEntries = Math.max(1, nonNegative("maxCacheEntries", options.maxCacheEntries ?? DEFAULT_VERIFY_CACHE_ENTRIES));
    this.keys = registeredKeys(options.keys);
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  updateKeys(keys: ReadonlyMap<string, string>): void {
    const next = registeredKeys(keys); // throws before anything changes
    if (sameKeys(this.keys, next)) return; // e.g. a policy change that left identities alone
    this.keys = next;
    this.cache.clear();
    this.recent.fill(undefined);
  }

  verify(token: string | undefined, now: number = Date.now()): VerifiedCaller {
    if (token !== undefined && token.length > 8) {
      // A token read from a message is a new string each time, and hashing ~150
      // characters for the Map costs more than the rest of the lookup: first try a
      // small table indexed by signature characters (random), compared whole.
      const slot = this.recent[recentSlot(token)];
      if (slot !== undefined && slot.token === token && now <= slot.verified.validUntil) return slot.verified;
      const hit = this.cache.get(token);
      if (hit !== undefined) {
        if (now <= hit.validUntil) {
          this.recent[recentSlot(token)] = { token, verified: hit };
          return hit;
        }
        this.cache.delete(token);
      }
    }
    return this.verifyFresh(token, now);
  }

  private verifyFresh(token: string | undefined, now: number): VerifiedCaller {
    if (token === undefined || token === "") {
      throw unauthenticated(`missing ${TOKEN_HEADER} header: the caller has no identity (connect with { name, seed })`);
    }
    const p = parse(token);
    if (typeof p === "string") throw unauthenticated(`malformed ${TOKEN_HEADER}: ${p}`);
    const registered = this.keys.get(p.caller);
    if (registered === undefined) {
      throw unauthenticated(`caller "${p.caller}" is not a registered identity (register its public key in the policy's identities)`);
    }
    if (p.keyHint !== registered.hint) {
      throw unauthenticated(
        `key mismatch: the token of "${p.caller}" is signed with key ${p.keyHint}…, but "${p.caller}" is registered with key ${shortKey(registered.publicKey)} (rotated key? the caller must use the seed of its registered key)`,
      );
    }
    if (!edVerify(null, p.signed, registered.key, p.signature)) {
      throw unauthenticated(`forged signature: the token of "${p.caller}" does not verify with its registered key ${shortKey(registered.publicKey)}`);
    }
    if (p.target !== this.service) {
      throw unauthenticated(`wrong target: the token of "${p.caller}" is for service "${p.target}", not "${this.service}" (a token is bound to one target)`);
    }
    if (p.expiresAt <= p.issuedAt || p.expiresAt - p.issuedAt > this.maxLifetimeMs) {
      throw unauthenticated(`malformed ${TOKEN_HEADER}: lifetime ${p.expiresAt - p.issuedAt} ms of the token of "${p.caller}" is not within (0, ${this.maxLifetimeMs}] ms`);
    }
    if (p.issuedAt > now + this.clockSkewMs) {
      throw unauthenticated(`token not yet valid: the token of "${p.caller}" is issued ${p.issuedAt - now} ms in the future (clock skew allowed: ${this.clockSkewMs} ms)`);
    }
    const validUntil = p.expiresAt + this.clockSkewMs;
    if (now > validUntil) {
      throw unauthenticated(`expired token: the token of "${p.caller}" expired ${now - p.expiresAt} ms ago (clock skew allowed: ${this.clockSkewMs} ms)`);
    }
    const verified: VerifiedCaller = Object.freeze({ caller: p.caller, validUntil });
    this.remember(token, verified, now);
    return verified;
  }

  private remember(token: string, verified: VerifiedCaller, now: number): void {
    if (this.cache.size >= this.maxEntries) {
      // Drop what has expired, at most once a second; then, if still full, the oldest.
      if (now >= this.nextSweep) {
        this.nextSweep = now + 1_000;
        for (const [t, v] of this.cache) if (now > v.validUntil) this.cache.delete(t);
      }
      while (this.cache.size >= this.maxEntries) {
        const oldest = this.cache.keys().next();
        if (oldest.done) break;
        this.cache.delete(oldest.value);
      }
    }
    // Copied: the token read from a request would keep its whole header block.
    const kept = unsharedCopy(token);
    this.cache.set(kept, verified);
    this.recent[recentSlot(kept)] = { token: kept, verified };
  }
}

function nonNegative(label: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new MeshError("BAD_REQUEST", `${label} must be a number ≥ 0, got ${value}`);
  return value;
}

/** A verifier for tokens addressed to `service`, trusting only `keys`. */
export function createVerifier(options: VerifierOptions): TokenVerifier {
  return new Verifier(options.service, options);
}
