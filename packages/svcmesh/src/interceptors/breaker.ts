// Circuit breakers (opossum), one per ctx.key (`<service>.v<major>` or `<service>`),
// made on the key's first call and kept in this closure.
//
// - Open: calls fail at once with CIRCUIT_OPEN (not retryable, details { key,
//   retryAfterMs }) and never reach `next`, so the network is not touched.
// - After resetTimeoutMs the breaker is half-open: one probe goes through while the
//   others still fail fast; the probe's success closes it, its failure re-opens it.
// - Only failures that mean the target is unhealthy count (see COUNTS). Every other
//   error passes through untouched and, as opossum does, counts as a sample in which
//   the target answered (so it also closes a half-open breaker).
// - The caller always receives the original error object.
//
// opossum options chosen for the hot path: no opossum timeout (deadlines live in retry
// and transport), no latency percentiles (with them, every counted failure concatenates
// and sorts every latency in the window: ~90 µs per call at 10% failures and 20k calls
// in the window, vs ~3-5 µs without), no snapshot timer, a fixed name (otherwise a UUID
// per breaker). What remains per call is opossum's fire(): about 0.5-0.8 µs on the
// 2-vCPU bench VM with a stubbed next, whatever the options; a disabled breaker costs
// a Map lookup. Calls rejected while open skip fire() (see the interceptor below).
// opossum keeps its rolling window across close: with resetTimeoutMs shorter than
// rollingCountTimeoutMs, failures from before the opening still weigh after it closes.
import CircuitBreaker from "opossum";
import type { Logger } from "pino";
import type { ErrorCode } from "../codes.js";
import { MeshError, isMeshError } from "../errors.js";
import type { CallContext, Disposer, Interceptor, Next } from "../pipeline.js";
import type { BreakerSettings } from "../settings.js";
import { MAX_PER_TARGET } from "../bounded.js";

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerTransition {
  key: string;
  from: BreakerState;
  to: BreakerState;
  /** ms since the epoch. */
  at: number;
  /**
   * failures, successes (ignored errors included) and fires (calls let through) are
   * opossum's rolling window at the time of the transition; rejects counts the calls
   * failed fast since the breaker last opened (0 on the transition to open).
   */
  stats: { failures: number; successes: number; rejects: number; fires: number };
}

export interface BreakerInterceptorOptions {
  /** Settings for a key (`<service>.v<major>` or `<service>`); called when a key's breaker is first made. */
  settingsFor(key: string): BreakerSettings;
  /** Each transition is logged once: warn for open, info for half-open and close. */
  logger: Logger;
}

export interface BreakerInterceptor {
  interceptor: Interceptor;
  /** Typed listener; returns a disposer. A listener that throws is logged and skipped. */
  onStateChange(listener: (t: BreakerTransition) => void): Disposer;
  /** The key's state; undefined before its first call, when its breaker is disabled, or after close(). */
  state(key: string): BreakerState | undefined;
  /** Every breaker there is, with its state (the metrics gauge reads them). */
  states(): Iterable<readonly [string, BreakerState]>;
  /** Shut down every breaker (clears opossum's timers); later calls pass straight through. */
  close(): void;
  /**
   * Asks the settings again for every key (a new policy): a breaker whose settings
   * changed is dropped (state and window; one that was not closed reports a transition
   * to closed) and the next call makes one with the new settings. A breaker whose
   * settings did not change keeps its state: an open one stays open.
   */
  refresh(): void;
}

/**
 * Which codes mean "the target is unhealthy". Exhaustive on purpose: a new code must be
 * placed here. BAD_RESPONSE counts: the callee answered with something undecodable or
 * off-contract, a callee bug. NOT_FOUND, the caller's own mistakes and refusals do not;
 * CIRCUIT_OPEN from a callee reaches us as UNAVAILABLE (see server/).
 */
export const BREAKER_COUNTS: Readonly<Record<ErrorCode, boolean>> = {
  NOT_FOUND: false,
  NO_RESPONDERS: true,
  TIMEOUT: true,
  BAD_REQUEST: false,
  BAD_RESPONSE: true,
  FORBIDDEN: false,
  UNAUTHENTICATED: false,
  RATE_LIMITED: false,
  CIRCUIT_OPEN: false,
  UNAVAILABLE: true,
  HANDLER_ERROR: true,
};

/**
 * True when a failure says nothing about the target, so the breaker must not count it:
 * a code outside BREAKER_COUNTS, a call the caller cancelled itself, or a request that
 * never left this process (a publish on a closed or draining connection: transport.ts
 * marks it `details.neverSent`). Errors that are not MeshErrors count.
 */
export function breakerIgnores(e: unknown, ctx?: CallContext): boolean {
  if (ctx?.signal?.aborted) return true;
  if (!isMeshError(e)) return false;
  if (BREAKER_COUNTS[e.code] !== true) return true;
  return e.code === "UNAVAILABLE" && (e.details as { neverSent?: unknown } | undefined)?.neverSent === true;
}

type Breaker = CircuitBreaker<[CallContext, Next], unknown>;

interface Entry {
  readonly key: string;
  readonly breaker: Breaker;
  readonly resetTimeoutMs: number;
  /** The settings it was made with, as JSON: refresh() keeps it while they hold. */
  readonly settings: string;
  state: BreakerState;
  openedAt: number;
  /** Calls failed fast since the breaker last opened. */
  rejects: number;
}

const run = (ctx: CallContext, next: Next): Promise<unknown> => next(ctx);

/** opossum opens when the error rate is strictly above its threshold; ours is "at least". */
const AT_LEAST = 1e-9;

export function createBreakerInterceptor(options: BreakerInterceptorOptions): BreakerInterceptor {
  const { logger } = options;
  // null: the key's breaker is disabled (remembered, so settingsFor runs once per key).
  const entries = new Map<string, Entry | null>();
  const listeners = new Set<(t: BreakerTransition) => void>();
  let shut = false;

  const transition = (entry: Entry, to: BreakerState): void => {
    const from = entry.state;
    if (from === to) return;
    entry.state = to;
    const at = Date.now();
    if (to === "open") {
      entry.openedAt = at;
      entry.rejects = 0;
    }
    const s = entry.breaker.stats;
    const t: BreakerTransition = {
      key: entry.key,
      from,
      to,
      at,
      stats: { failures: s.failures, successes: s.successes, rejects: entry.rejects, fires: s.fires },
    };
    const fields = { key: t.key, from, to, stats: t.stats };
    if (to === "open") logger.warn(fields, `circuit open: calls to ${t.key} fail fast for ${entry.resetTimeoutMs} ms`);
    else if (to === "half_open") logger.info(fields, `circuit half-open: the next call to ${t.key} is a probe`);
    else logger.info(fields, `circuit closed: calls to ${t.key} flow again`);
    // Listeners run inside opossum's event handlers: one that throws must not break a call.
    for (const listener of listeners) {
      try {
        listener(t);
      } catch (e) {
        logger.error({ err: e, key: t.key }, "breaker state listener threw");
      }
    }
  };

  /** Room for one more key: the oldest closed (or disabled) breaker goes; open ones stay unless all are. */
  const makeRoom = (): void => {
    if (entries.size < MAX_PER_TARGET) return;
    let victim: string | undefined;
    for (const [key, entry] of entries) {
      if (entry === null || entry.state === "closed") {
        victim = key;
        break;
      }
    }
    victim ??= entries.keys().next().value as string;
    entries.get(victim)?.breaker.shutdown();
    entries.delete(victim);
  };

  const create = (key: string): Entry | null => {
    makeRoom();
    const s = options.settingsFor(key);
    if (!s.enabled) {
      entries.set(key, null);
      return null;
    }
    const breaker: Breaker = new CircuitBreaker(run, {
      name: key,
      timeout: false,
      errorThresholdPercentage: s.errorThresholdPercentage - AT_LEAST,
      volumeThreshold: s.volumeThreshold,
      resetTimeout: s.resetTimeoutMs,
      rollingCountTimeout: s.rollingCountTimeoutMs,
      // Buckets of at least 1 ms (opossum rotates them every timeout / buckets ms).
      rollingCountBuckets: Math.max(1, Math.min(10, s.rollingCountTimeoutMs)),
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      errorFilter: breakerIgnores,
    });
    const entry: Entry = { key, breaker, resetTimeoutMs: s.resetTimeoutMs, settings: JSON.stringify(s), state: "closed", openedAt: 0, rejects: 0 };
    const failureThreshold = s.failureThreshold;
    if (failureThreshold !== undefined) {
      // opossum knows only a ratio: open it ourselves once the window holds this many
      // counted failures, whatever the ratio (errors the filter ignores never get here).
      breaker.on("failure", () => {
        if (breaker.closed && breaker.stats.failures >= failureThreshold) breaker.open();
      });
    }
    breaker.on("open", () => transition(entry, "open"));
    breaker.on("halfOpen", () => transition(entry, "half_open"));
    breaker.on("close", () => transition(entry, "closed"));
    entries.set(key, entry);
    return entry;
  };

  const circuitOpen = (entry: Entry): MeshError => {
    const retryAfterMs = entry.state === "open" ? Math.max(0, entry.openedAt + entry.resetTimeoutMs - Date.now()) : 0;
    const what = entry.state === "open" ? `retry after ${retryAfterMs} ms` : "a probe is in flight";
    return new MeshError("CIRCUIT_OPEN", `circuit open for ${entry.key}: ${what}`, {
      retryable: false,
      details: { key: entry.key, retryAfterMs },
    });
  };

  const interceptor: Interceptor = (ctx, next) => {
    let entry = entries.get(ctx.key);
    if (entry === undefined) {
      if (shut) return next(ctx);
      try {
        entry = create(ctx.key);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (entry === null) return next(ctx);
    const b = entry.breaker;
    // Closed, or half-open with the probe not yet taken: opossum's fire runs next and
    // settles with its result or its original error.
    if (b.closed || b.pendingClose) return b.fire(ctx, next);
    // Open, or half-open with its probe in flight: fail fast here rather than through
    // opossum's fire(), which would build and throw away an Error of its own (a reject
    // changes no opossum state, and keeping rejects out of its window keeps them out of
    // the error rate it computes after the breaker closes again).
    entry.rejects++;
    return Promise.reject(circuitOpen(entry));
  };

  return {
    interceptor,
    onStateChange(listener) {
      // A wrapper per registration, so registering one function twice gives two disposers.
      const l = (t: BreakerTransition): void => listener(t);
      listeners.add(l);
      return () => {
        listeners.delete(l);
      };
    },
    state(key) {
      return entries.get(key)?.state;
    },
    *states() {
      for (const [key, entry] of entries) if (entry) yield [key, entry.state] as const;
    },
    refresh() {
      for (const [key, entry] of entries) {
        if (entry === null) {
          entries.delete(key); // disabled: perhaps not any more
          continue;
        }
        if (JSON.stringify(options.settingsFor(key)) === entry.settings) continue;
        entry.breaker.shutdown();
        entries.delete(key);
        transition(entry, "closed"); // the next call starts afresh: say so
      }
    },
    close() {
      shut = true;
      for (const entry of entries.values()) entry?.breaker.shutdown();
      entries.clear();
      listeners.clear();
    },
  };
}
