// The caller's call pipeline: one small interceptor per concern, composed in a fixed
// order. The first entry is the outermost. This file is the only place the order is
// written down:
//
//   fallback → trace → policy → rate limit → breaker → retry → transport (route, encode, send)
//
// Trace is outermost so that every call, refused ones included (policy, rate limit,
// open breaker), is one span, one trace record and one metrics sample; it sits outside
// retry because a call is one CLIENT span however many attempts it takes (the count is
// on the span and the record), and every attempt carries the same traceparent and
// request id, so the callee's audit stores a retried call once. Policy rejects a call before it uses up any rate-limit tokens; local throttling sits
// outside the breaker, so it never counts as a remote failure; the breaker wraps retry,
// so one logical call is one breaker sample; every attempt gets its own deadline
// inside retry; transport is the only code that touches NATS.
import type { Msg } from "nats";
import type { RateLimit } from "./settings.js";
import type { Target } from "./target.js";
import type { TraceContext } from "./trace/context.js";

/**
 * One call as it travels through the interceptors. Interceptors never add fields. A
 * class, not an object literal: it lives as long as its call (see Pending in
 * client/transport.ts for why that matters to V8).
 */
export class CallContext {
  /** 1-based; set by the retry interceptor before each attempt. */
  attempt = 0;
  /** Deadline of the current attempt (≤ deadline); set by the retry interceptor. */
  attemptDeadline: number;
  /** This call's trace and span ids; set by the trace interceptor ("" without one). */
  traceId = "";
  spanId = "";
  /** traceparent/tracestate header lines for every attempt; set by the trace interceptor. */
  traceLines = "";
  /** The last reply received (kept so the trace record can say who answered). */
  reply: Msg | undefined = undefined;

  constructor(
    /** This process's identity as a caller. */
    readonly caller: string,
    readonly target: Target,
    readonly endpoint: string,
    readonly payload: unknown,
    /** Absolute deadline of the whole call (ms since the epoch). */
    readonly deadline: number,
    readonly signal: AbortSignal | undefined,
    /**
     * Breaker and rate-limit key: `<service>.v<major>` once the target's major is known
     * from discovery, else `<service>`.
     */
    readonly key: string,
    /** Whether the callee declared the endpoint idempotent (from discovery), if known. */
    readonly idempotent: boolean,
    /** The limit the callee publishes for this caller (its name, else "*"), if any. */
    readonly rateLimit: RateLimit | undefined,
    /** Mesh-Request-Id: one per logical call, the same on every attempt. */
    readonly requestId: string,
    /** When the call started (ms since the epoch). */
    readonly startedAt: number,
    /** The trace this call continues (a handler's nested call), if given explicitly. */
    readonly parentTrace: TraceContext | undefined,
  ) {
    this.attemptDeadline = deadline;
  }
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
