// Retries with exponential backoff and full jitter, never past the call's deadline.
// A request that provably never reached a handler (NO_RESPONDERS, or a publish that
// failed before anything was sent) may always be retried; TIMEOUT and UNAVAILABLE
// only when the callee declared the endpoint idempotent. Each attempt gets its own
// deadline (attemptTimeoutMs, capped by the call's).
import type { ErrorCode } from "../codes.js";
import { MeshError, isMeshError } from "../errors.js";
import type { CallContext, Disposer, Interceptor, Next } from "../pipeline.js";
import type { RetrySettings } from "../settings.js";

export interface RetryExhausted {
  ctx: CallContext;
  attempts: number;
  code: ErrorCode;
}

export interface RetryInterceptorOptions {
  settingsFor(ctx: CallContext): RetrySettings;
  /** Injectable for tests. */
  random?: () => number;
}

export interface RetryInterceptor {
  interceptor: Interceptor;
  /** Fired when a retryable failure ran out of attempts or time. */
  onExhausted(listener: (e: RetryExhausted) => void): Disposer;
}

/** True for errors of requests that never left this process (see transport.ts). */
export function neverSent(e: MeshError): boolean {
  return (e.details as { neverSent?: unknown } | undefined)?.neverSent === true;
}

export function shouldRetry(e: unknown, idempotent: boolean): boolean {
  if (!isMeshError(e) || !e.retryable) return false;
  switch (e.code) {
    case "NO_RESPONDERS":
      return true;
    case "UNAVAILABLE":
      return neverSent(e) || idempotent;
    case "TIMEOUT":
      return idempotent;
    default:
      return false;
  }
}

export function createRetryInterceptor(options: RetryInterceptorOptions): RetryInterceptor {
  const random = options.random ?? Math.random;
  const listeners = new Set<(e: RetryExhausted) => void>();

  const attempt = (ctx: CallContext, next: Next, settings: RetrySettings): Promise<unknown> => {
    ctx.attemptDeadline = settings.attemptTimeoutMs === undefined ? ctx.deadline : Math.min(ctx.deadline, Date.now() + settings.attemptTimeoutMs);
    return next(ctx).then(undefined, (e: unknown) => {
      if (!shouldRetry(e, ctx.idempotent)) throw e;
      const error = e as MeshError;
      if (ctx.attempt >= settings.attempts) return exhausted(ctx, error);
      // Full jitter: a random wait up to the exponential bound, so callers do not stampede.
      const bound = Math.min(settings.maxBackoffMs, settings.backoffMs * 2 ** (ctx.attempt - 1));
      const wait = Math.floor(random() * bound);
      // Written so a NaN wait (0 * 2 ** 1024) gives up instead of retrying past the deadline.
      if (!(Date.now() + wait < ctx.deadline)) return exhausted(ctx, error);
      return sleep(wait, ctx.signal).then(() => {
        ctx.attempt++;
        return attempt(ctx, next, settings);
      });
    });
  };

  const exhausted = (ctx: CallContext, error: MeshError): never => {
    for (const l of listeners) l({ ctx, attempts: ctx.attempt, code: error.code });
    throw error;
  };

  return {
    interceptor: (ctx, next) => {
      const settings = options.settingsFor(ctx);
      ctx.attempt = 1;
      return settings.attempts <= 1 ? (ctx.attemptDeadline = ctx.deadline, next(ctx)) : attempt(ctx, next, settings);
    },
    onExhausted(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** Waits, unless the call is cancelled first; no timer is left behind either way. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0 && !signal?.aborted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function cancelled(signal: AbortSignal): MeshError {
  return new MeshError("TIMEOUT", "call was cancelled while waiting to retry", { cause: signal.reason, retryable: false });
}
