// Per-caller rate limits enforced by the callee: one token bucket per caller name per
// service instance, checked before the request body is even decoded.
//
// Limits hold for the service as a whole, across instances, by shares: each instance
// enforces rps/N and burst/N of every configured limit, where N is the number of live
// instances of the service's major (the queue group its callers reach) according to
// discovery. NATS queue groups spread a caller's requests evenly at random over the
// instances, so the instances together admit about the configured rate. Each instance polls its discovery view every
// SHARE_CHECK_MS (a Map lookup; the view is kept fresh by start/stop announcements and a
// TTL refresh) and recounts only when the view changed; the buckets read their limits
// by reference, so a new share reaches every caller's bucket at its next request.
// Caveats: a burst share is never below one token (with more instances than the burst
// allows, the service-wide burst is N); an instance that died without announcing keeps
// counting until discovery's TTL refresh notices, which makes shares temporarily smaller;
// a burst spread at random may meet an instance's share a little before the service-wide
// burst is used up.
import type { Logger } from "pino";
import semver from "semver";
import { MeshError } from "../errors.js";
import { RepeatedLog } from "../logger.js";
import { type BucketLimit, type TokenBucket, TokenBucketMap, bucketLimit } from "../limits/token-bucket.js";
import type { Registry } from "../registry.js";
import type { RateLimit } from "../settings.js";

/** The key that limits every caller the configuration does not name. */
export const ANY_CALLER = "*";
/** How often an instance looks whether the number of instances changed (ms). */
export const SHARE_CHECK_MS = 250;
/** Bounds the buckets kept for callers limited by the "*" entry. */
export const MAX_CALLER_BUCKETS = 10_000;
/** Smallest per-instance burst share: a bucket must be able to hold one token. */
const MIN_BURST_SHARE = 1;

/** One configured limit: the service-wide value, and this instance's share of it (mutated in place). */
interface Limit {
  readonly service: Readonly<BucketLimit>;
  readonly share: BucketLimit;
}

export interface CallerRateLimiterOptions {
  service: string;
  /** Caller name (or "*") → service-wide limit; validated by validateServeOptions. */
  limits: Readonly<Record<string, RateLimit>>;
  registry: Registry;
  logger: Logger;
  /** This instance's id, counted even before discovery has seen it. */
  self: () => string;
  /**
   * This instance's major version. A caller's calls go to one major's queue group, so
   * the limit is shared among the instances of that major only (instances of another
   * major, side by side in an upgrade, never see those calls).
   */
  major: number;
}

/** The limits as published in discovery metadata and applied: burst filled in. */
export function resolvedLimits(limits: Readonly<Record<string, RateLimit>>): Record<string, BucketLimit> {
  const out: Record<string, BucketLimit> = {};
  for (const [caller, l] of Object.entries(limits)) out[caller] = bucketLimit(l.rps, l.burst);
  return out;
}

export class CallerRateLimiter {
  private readonly buckets = new TokenBucketMap({ maxKeys: MAX_CALLER_BUCKETS });
  private readonly named = new Map<string, Limit>();
  private readonly any: Limit | undefined;
  private instances = 1;
  private generation: number | undefined;
  private counting: Promise<void> | undefined;
  /** Recounts are tried every tick: a failing one is logged once a minute. */
  private readonly failureLog = new RepeatedLog();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: CallerRateLimiterOptions) {
    for (const [caller, l] of Object.entries(resolvedLimits(options.limits))) {
      const limit: Limit = { service: Object.freeze({ ...l }), share: { ...l } };
      if (caller === ANY_CALLER) this.any = limit;
      else {
        this.named.set(caller, limit);
        this.buckets.pin(caller, limit.share);
      }
    }
  }

  /**
   * Takes over from the limiter this one replaces (a policy changed the limits): the
   * instance count, and the buckets of callers whose limit did not change, so an edit
   * does not hand every caller a fresh burst.
   */
  adopt(previous: CallerRateLimiter | undefined): void {
    if (previous === undefined) return;
    this.share(previous.instances);
    for (const [caller, bucket] of previous.buckets.entries()) {
      const before = previous.limitOf(caller);
      const now = this.limitOf(caller);
      if (before === undefined || now === undefined || before.service.rps !== now.service.rps || before.service.burst !== now.service.burst) continue;
      bucket.limit = now.share;
      this.buckets.adopt(caller, bucket, this.named.has(caller));
    }
  }

  private limitOf(caller: string): Limit | undefined {
    return this.named.get(caller) ?? this.any;
  }

  /** How many instances the limits are currently shared among. */
  get sharedBy(): number {
    return this.instances;
  }

  /** Counts the instances once (bounded by discovery's query time), then keeps the count fresh. */
  async start(): Promise<void> {
    await this.recount();
    if (this.stopped) return;
    this.timer ??= setInterval(this.check, SHARE_CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Takes a token for one request from `caller`; undefined means go on. A rejection
   * is a RATE_LIMITED error whose details say when to retry. Allocates only to reject.
   */
  take(caller: string, now: number): MeshError | undefined {
    let bucket = this.buckets.get(caller);
    if (bucket === undefined) {
      if (this.any === undefined) return undefined; // not named, and no "*": unlimited
      bucket = this.buckets.add(caller, this.any.share, now);
    }
    if (bucket.take(now)) return undefined;
    return this.rejection(caller, bucket, now);
  }

  /** Gives back the token of a request that was then turned away for another reason. */
  refund(caller: string): void {
    this.buckets.get(caller)?.refund();
  }

  private rejection(caller: string, bucket: TokenBucket, now: number): MeshError {
    const limit = (this.named.get(caller) ?? this.any)!.service;
    // This bucket refills at rps/N, but the caller's next request may reach any of the N
    // instances: together they admit one more about N times sooner.
    const retryAfterMs = Math.ceil(bucket.retryAfterMs(now) / this.instances);
    const who = caller === "" ? "an anonymous caller" : caller;
    return new MeshError(
      "RATE_LIMITED",
      `${who} is over its rate limit for ${this.options.service} (${limit.rps} rps, burst ${limit.burst}); retry in ${retryAfterMs} ms`,
      { details: { retryAfterMs, limit, caller } },
    );
  }

  /** Timer tick: recount when the discovery view changed (or is missing). Never throws. */
  private readonly check = (): void => {
    if (this.counting) return;
    const view = this.options.registry.peek(this.options.service, Date.now());
    if (view !== undefined && view.generation === this.generation) return;
    void this.recount();
  };

  private recount(): Promise<void> {
    this.counting ??= this.options.registry
      .running(this.options.service)
      .then(({ instances, generation }) => {
        this.generation = generation;
        const self = this.options.self();
        const peers = instances.filter((i) => semver.parse(i.version, true)?.major === this.options.major);
        const n = peers.length + (self !== "" && peers.some((i) => i.id === self) ? 0 : 1);
        this.share(n);
      })
      .catch((e: unknown) => {
        const logged = this.failureLog.admit(String((e as Error)?.message));
        if (logged) this.options.logger.warn({ err: e, heldBack: logged.held }, "could not count instances for rate-limit shares; keeping the last count");
      })
      .finally(() => {
        this.counting = undefined;
      });
    return this.counting;
  }

  private share(n: number): void {
    n = Math.max(1, n);
    if (n === this.instances) return;
    this.options.logger.debug({ from: this.instances, to: n }, "rate-limit shares follow the instance count");
    this.instances = n;
    for (const l of [...this.named.values(), ...(this.any ? [this.any] : [])]) {
      l.share.rps = l.service.rps / n;
      l.share.burst = Math.max(MIN_BURST_SHARE, l.service.burst / n);
    }
  }
}
