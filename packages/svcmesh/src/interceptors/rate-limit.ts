// The caller's mirror of the callee's per-caller rate limit: a well-behaved caller
// fails fast, without a network hop, once it is over the limit the callee published
// for it in discovery. The callee enforces the same limit regardless (server/), so a
// caller that skips this gains nothing. One bucket per target service: the callee's
// limit holds for the service as a whole.
import { isMeshError, MeshError } from "../errors.js";
import { type BucketLimit, type TokenBucket, TokenBucketMap, bucketLimit } from "../limits/token-bucket.js";
import type { Disposer, Interceptor, CallContext } from "../pipeline.js";
import type { RateLimit } from "../settings.js";
import { turnedAwayUnserved } from "../server/endpoint.js";

export interface RateLimitInterceptor {
  interceptor: Interceptor;
  /** Told of every call refused locally (mesh events coalesce these). */
  onLimited(listener: (ctx: CallContext) => void): Disposer;
}

/**
 * The callee gives back the token of a request it turned away before serving it (a full
 * bulkhead, an audit backlog refusing calls), and never took one for a request nobody
 * received: the mirror does the same, or it would refuse calls the callee would take.
 */
function refundIfUncounted(bucket: TokenBucket, e: unknown): never {
  if (isMeshError(e) && (e.code === "NO_RESPONDERS" || turnedAwayUnserved(e))) bucket.refund();
  throw e;
}

export function createRateLimitInterceptor(): RateLimitInterceptor {
  const buckets = new TokenBucketMap({ maxKeys: 1024 });
  // Resolved limits per published limit object, so a changed limit re-limits the bucket.
  const resolved = new WeakMap<RateLimit, BucketLimit>();
  const listeners = new Set<(ctx: CallContext) => void>();

  return {
    interceptor: (ctx, next) => {
      const published = ctx.rateLimit;
      if (!published) return next(ctx);
      let limit = resolved.get(published);
      if (!limit) resolved.set(published, (limit = bucketLimit(published.rps, published.burst)));
      const now = performance.now();
      const bucket = buckets.bucket(ctx.target.service, limit, now);
      if (bucket.limit !== limit) bucket.limit = limit;
      if (bucket.take(now)) return next(ctx).then(undefined, (e: unknown) => refundIfUncounted(bucket, e));
      for (const l of listeners) l(ctx);
      const retryAfterMs = bucket.retryAfterMs(now);
      return Promise.reject(
        new MeshError("RATE_LIMITED", `${ctx.caller} is over its limit of ${limit.rps} calls/s to ${ctx.target.service} (refused locally)`, {
          details: { retryAfterMs, limit: { rps: limit.rps, burst: limit.burst }, caller: ctx.caller, local: true },
        }),
      );
    },
    onLimited(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
