// The caller's call pipeline: one small interceptor per concern, composed in a fixed
// order. The first entry is the outermost. This file is the only place the order is
// written down:
//
//   fallback → policy → rate limit → breaker → retry → transport (route, encode, send)
//
// Policy rejects a call before it uses up any rate-limit tokens; local throttling sits
// outside the breaker, so it never counts as a remote failure; the breaker wraps retry,
// so one logical call is one breaker sample; every attempt gets its own deadline
// inside retry; transport is the only code that touches NATS.
import type { RateLimit } from "./settings.js";
import type { Target } from "./target.js";

/** One call as it travels through the interceptors. Interceptors never add fields. */
export interface CallContext {
  /** This process's identity as a caller. */
  readonly caller: string;
  readonly target: Target;
  readonly endpoint: string;
  readonly payload: unknown;
  /** Absolute deadline of the whole call (ms since the epoch). */
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  /**
   * Breaker and rate-limit key: `<service>.v<major>` once the target's major is known
   * from discovery, else `<service>`.
   */
  readonly key: string;
  /** Whether the callee declared the endpoint idempotent (from discovery), if known. */
  readonly idempotent: boolean;
  /** The limit the callee publishes for this caller (its name, else "*"), if any. */
  readonly rateLimit: RateLimit | undefined;
  /** 1-based; set by the retry interceptor before each attempt. */
  attempt: number;
  /** Deadline of the current attempt (≤ deadline); set by the retry interceptor. */
  attemptDeadline: number;
}

export type Next = (ctx: CallContext) => Promise<unknown>;
export type Interceptor = (ctx: CallContext, next: Next) => Promise<unknown>;

/** Folds interceptors around a terminal step; the first interceptor is the outermost. */
export function compose(interceptors: readonly Interceptor[], terminal: Next): Next {
  let next = terminal;
  for (let i = interceptors.length - 1; i >= 0; i--) {
    const interceptor = interceptors[i]!;
    const inner = next;
    next = (ctx) => interceptor(ctx, inner);
  }
  return next;
}

/** A typed listener registration; calling the returned function removes the listener. */
export type Disposer = () => void;
