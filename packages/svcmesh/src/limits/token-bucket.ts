// Token buckets for rate limits, used by the callee (per-caller limits) and by the
// caller's mirror of them. Allocation-free on the hot path: a bucket is three numbers
// and a reference to its limit, refilled lazily from a monotonic clock
// (performance.now(), in ms) when it is asked for a token. No timers.
//
// A bucket reads its rps and burst from a `BucketLimit` object it holds by reference:
// changing that object's fields re-limits every bucket that shares it, lazily, at
// their next use (a bucket holding more tokens than the new burst is clamped then).
// The callee uses this to move all its callers to a new per-instance share at once.
import { unsharedCopy } from "../unshared.js";

/** A resolved limit: `rps` tokens per second, at most `burst` banked. Mutable on purpose (see above). */
export interface BucketLimit {
  rps: number;
  burst: number;
}

/**
 * A limit as users write it, resolved: burst defaults to rps, but never below 1, since a
 * bucket that can never hold one whole token would refuse everything.
 */
export function bucketLimit(rps: number, burst?: number): BucketLimit {
  return { rps, burst: burst ?? Math.max(1, rps) };
}

export class TokenBucket {
  /** Tokens banked at `last` (fractional). */
  private tokens: number;
  /** Clock reading (ms) the tokens were last brought up to date at. */
  private last: number;

  /** Starts full. */
  constructor(
    public limit: BucketLimit,
    now: number = performance.now(),
  ) {
    this.tokens = limit.burst;
    this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number = performance.now()): boolean {
    const tokens = this.refill(now);
    if (tokens < 1) return false;
    this.tokens = tokens - 1;
    return true;
  }

  /** Gives back a token taken for a request that was then not served after all. */
  refund(): void {
    this.tokens = Math.min(this.limit.burst, this.tokens + 1);
  }

  /** Milliseconds until a token is available: 0 if one is now; at least 1 otherwise. */
  retryAfterMs(now: number = performance.now()): number {
    const tokens = this.available(now);
    if (tokens >= 1) return 0;
    return Math.max(1, Math.ceil(((1 - tokens) * 1000) / this.limit.rps));
  }

  /** Tokens available at `now` (fractional), without taking any. */
  available(now: number = performance.now()): number {
    const elapsed = now - this.last;
    const tokens = elapsed > 0 ? this.tokens + (elapsed * this.limit.rps) / 1000 : this.tokens;
    return tokens < this.limit.burst ? tokens : this.limit.burst;
  }

  /** Full again: forgetting this bucket and making a new one would change nothing. */
  idle(now: number = performance.now()): boolean {
    return this.available(now) >= this.limit.burst;
  }

  private refill(now: number): number {
    const tokens = this.available(now);
    // A clock reading older than the last one (callers passing their own) never moves time back.
    if (now > this.last) this.last = now;
    this.tokens = tokens;
    return tokens;
  }
}

export interface TokenBucketMapOptions {
  /** Most buckets kept for keys that come and go (pinned keys not counted). Default 10 000. */
  maxKeys?: number;
  /** While full, how often a new key may trigger a sweep for idle buckets (ms). Default 1000. */
  sweepIntervalMs?: number;
}

/**
 * Buckets by key (e.g. caller name), bounded so a flood of distinct keys cannot grow
 * memory without bound. When `maxKeys` buckets exist, a new key first triggers a sweep
 * that drops idle (full) buckets, which loses nothing; at most one sweep per
 * `sweepIntervalMs`. If no room is found, the new key gets the shared overflow bucket:
 * keys beyond the bound are limited together, never let through unlimited. Pinned keys
 * (e.g. callers named in a configuration) are never swept and do not count against
 * the bound.
 */
export class TokenBucketMap {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly pinned = new Set<string>();
  private readonly maxKeys: number;
  private readonly sweepIntervalMs: number;
  private nextSweep = -Infinity;
  private overflowBucket: TokenBucket | undefined;

  constructor(options: TokenBucketMapOptions = {}) {
    this.maxKeys = Math.max(1, options.maxKeys ?? 10_000);
    this.sweepIntervalMs = Math.max(0, options.sweepIntervalMs ?? 1_000);
  }

  /** Buckets held, pinned included (the overflow bucket is not counted). */
  get size(): number {
    return this.buckets.size;
  }

  /** The bucket of a key, if it has one of its own. */
  get(key: string): TokenBucket | undefined {
    return this.buckets.get(key);
  }

  /** The key's bucket, made (full, with `limit`) if it has none; may be the overflow bucket. */
  bucket(key: string, limit: BucketLimit, now: number = performance.now()): TokenBucket {
    return this.buckets.get(key) ?? this.add(key, limit, now);
  }

  /** A bucket for a key that is never swept and is not counted against `maxKeys`. */
  pin(key: string, limit: BucketLimit, now: number = performance.now()): TokenBucket {
    let b = this.buckets.get(key);
    if (b) b.limit = limit;
    else this.buckets.set(key, (b = new TokenBucket(limit, now)));
    this.pinned.add(key);
    return b;
  }

  /** Makes a bucket for a key that has none (call `get` first), or hands out the overflow bucket. */
  add(key: string, limit: BucketLimit, now: number = performance.now()): TokenBucket {
    if (this.buckets.size - this.pinned.size >= this.maxKeys) {
      if (now < this.nextSweep || this.sweep(now) === 0) return this.overflow(limit, now);
    }
    const b = new TokenBucket(limit, now);
    // Copied: a key read from a request (a caller name) would keep its whole header block.
    this.buckets.set(unsharedCopy(key), b);
    return b;
  }

  /** Drops idle unpinned buckets; returns how many. */
  sweep(now: number = performance.now()): number {
    this.nextSweep = now + this.sweepIntervalMs;
    let dropped = 0;
    for (const [key, b] of this.buckets) {
      if (b.idle(now) && !this.pinned.has(key)) {
        this.buckets.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  delete(key: string): boolean {
    this.pinned.delete(key);
    return this.buckets.delete(key);
  }

  /** Every key's own bucket, pinned ones included. */
  entries(): IterableIterator<[string, TokenBucket]> {
    return this.buckets.entries();
  }

  /** Puts a bucket in under `key` (pinned or not), replacing any. */
  adopt(key: string, bucket: TokenBucket, pinned: boolean): void {
    this.buckets.set(key, bucket);
    if (pinned) this.pinned.add(key);
  }

  clear(): void {
    this.buckets.clear();
    this.pinned.clear();
    this.overflowBucket = undefined;
  }

  private overflow(limit: BucketLimit, now: number): TokenBucket {
    if (!this.overflowBucket) this.overflowBucket = new TokenBucket(limit, now);
    else this.overflowBucket.limit = limit;
    return this.overflowBucket;
  }
}
