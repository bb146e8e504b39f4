// The caller side of a call: target → context → pipeline (pipeline.ts) → transport.
// The terminal step resolves the route per attempt (so a retry can find an instance
// that appeared during backoff), encodes once, and sends.
import { z } from "zod";
import { type ErrorCode, isErrorCode } from "../codes.js";
import { MeshError, isMeshError, showValue } from "../errors.js";
import { CallContext, type Interceptor, type Next, compose } from "../pipeline.js";
import type { Registry } from "../registry.js";
import { type CallSettings, type RateLimit, type RetrySettings, RetrySettingsInput, mergeCallSettings } from "../settings.js";
import { describeIssues, summarizeIssues } from "../schema.js";
import { parseTarget, pickLane, resolveRoute, type Route, type Target, type WeightedLanes, weightedLanes } from "../target.js";
import { validEndpointName } from "../subjects.js";
import { encodeBodyShared } from "../wire.js";
import type { TraceContext } from "../trace/context.js";
import type { RequestTransport } from "./transport.js";

export interface Fallback {
  /** The codes that trigger the fallback. */
  codes: readonly ErrorCode[];
  /** The value to return instead... */
  value?: unknown;
  /** ...or a function of the error that produces it (wins over `value`). */
  compute?: (error: MeshError) => unknown;
}

export interface CallOptions {
  /** Budget for this call; ignored when `deadline` is given. */
  timeoutMs?: number;
  /** Absolute deadline (ms since the epoch); nested calls pass their parent's. */
  deadline?: number;
  /** Cancels the call; it then fails with TIMEOUT (not retryable). */
  signal?: AbortSignal;
  /** Retry settings for this call only. */
  retry?: Partial<RetrySettings>;
  /** What to return instead of failing with one of the chosen codes. */
  fallback?: Fallback;
  /**
   * The trace this call belongs to. A handler's `ctx.mesh` sets it to the request's
   * trace; otherwise the active OpenTelemetry span, if any, is the parent, else the
   * call starts a new trace.
   */
  trace?: TraceContext;
}

interface CachedRoute {
  route: Route;
  generation: number;
  key: string;
  /** This caller's limit at the target, as the callee publishes it. */
  rateLimit: RateLimit | undefined;
  /** Subjects per endpoint, so the hot path builds no strings. */
  subjects: Map<string, string>;
  /** A canary split from the policy's traffic weights, if one applies. */
  weighted: WeightedLanes | undefined;
  /** Subjects per endpoint for each weighted lane. */
  weightedSubjects: Map<string, string[]>;
}

export interface CallerOptions {
  callerName: string;
  /** Settings for calls to `service`: defaults ← per-service settings (policy later). */
  settingsFor(service: string): CallSettings;
  /** Interceptors in pipeline order (see pipeline.ts). */
  interceptors: readonly Interceptor[];
  /** The outermost one that observes calls (trace, metrics): calls that fail before anything could be sent pass through it alone. */
  observe?: Interceptor;
  /** Extra request header lines for calls to `service` (identity token, policy revision). */
  headerLines?(service: string): string;
  /** The policy's settings for an endpoint (idempotent, timeout), if a policy is in force. */
  policyEndpoint?(service: string, endpoint: string): { idempotent?: boolean; call: { timeoutMs?: number } } | undefined;
  /** This caller's limit at `service` under the policy in force, if any. */
  policyRateLimit?(service: string): RateLimit | null | undefined;
  /** Traffic weights by version for `service` (the policy's canary split), if any. */
  trafficFor?(service: string): Readonly<Record<string, number>> | undefined;
  /** Injectable for tests. */
  random?: () => number;
}

/** Bounds the caches keyed by user-supplied strings. */
const MAX_CACHED_TARGETS = 1024;

export class Caller {
  private readonly targets = new Map<string, Target>();
  private readonly routes = new Map<string, CachedRoute>();
  private readonly pipeline: Next;
  /** Per-call settings reach interceptors through this map, never as fields on ctx. */
  private readonly callOverrides = new WeakMap<CallContext, CallSettings>();
  private readonly random: () => number;
  /**
   * The route call() has just checked, for the first attempt of that call: its send()
   * runs in the same turn (unless an interceptor defers it), so it need not look the
   * route up again. Matched by the call's context, so anything else looks it up.
   */
  private handedRoute: CachedRoute | undefined;
  private handedTo: CallContext | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly transport: RequestTransport,
    private readonly options: CallerOptions,
  ) {
    this.pipeline = compose(options.interceptors, (ctx) => this.send(ctx));
    this.random = options.random ?? Math.random;
  }

  parse(text: string): Target {
    let t = this.targets.get(text);
    if (!t) {
      t = parseTarget(text);
      if (this.targets.size >= MAX_CACHED_TARGETS) this.targets.clear();
      this.targets.set(text, t);
    }
    return t;
  }

  /** Settings in force for one call (per-call overrides included). */
  settings(ctx: CallContext): CallSettings {
    return this.callOverrides.get(ctx) ?? this.options.settingsFor(ctx.target.service);
  }

  /** Not async on purpose: a call with a cached route and no failure costs few promises. */
  call(targetText: string, endpoint: string, payload: unknown, opts: CallOptions | undefined): Promise<unknown> {
    let result: Promise<unknown>;
    try {
      const target = this.parse(targetText);
      if (typeof endpoint !== "string") throw new MeshError("BAD_REQUEST", `endpoint must be a string, got ${showValue(endpoint)}`);
      if (opts != null) checkCallOptions(opts);
      const now = Date.now();
      const base = this.options.settingsFor(target.service);
      const fromPolicy = this.options.policyEndpoint?.(target.service, endpoint);
      const deadline = deadlineOf(opts, now, fromPolicy?.call.timeoutMs ?? base.timeoutMs);
      if (deadline <= now) throw new MeshError("TIMEOUT", `deadline for ${target.text}.${endpoint} passed before the call was sent`);
      const cached = this.cachedRoute(target, now);
      result = cached
        ? this.start(target, endpoint, payload, now, deadline, opts, cached, base, fromPolicy)
        : this.resolve(target).then(
            (fresh) => this.start(target, endpoint, payload, now, deadline, opts, fresh, base, fromPolicy),
            // Nobody runs it yet: still go through the pipeline, so retries can wait for one.
            // No version matches: only observed (traced, measured), nothing else.
            (e: unknown) => (isMeshError(e) && (e.code === "NO_RESPONDERS" || e.code === "NOT_FOUND")
              ? this.start(target, endpoint, payload, now, deadline, opts, undefined, base, fromPolicy, e.code === "NOT_FOUND" ? e : undefined)
              : Promise.reject(e)),
          );
    } catch (e) {
      result = Promise.reject(e);
    }
    return opts?.fallback ? withFallback(result, opts.fallback) : result;
  }

  private start(
    target: Target,
    endpoint: string,
    payload: unknown,
    startedAt: number,
    deadline: number,
    opts: CallOptions | undefined,
    cached: CachedRoute | undefined,
    base: CallSettings,
    fromPolicy: { idempotent?: boolean } | undefined,
    notFound?: MeshError,
  ): Promise<unknown> {
    notFound ??= cached && !cached.route.endpoints.has(endpoint) ? unknownEndpoint(target, endpoint, cached.route) : undefined;
    const ctx = new CallContext(
      this.options.callerName,
      target,
      endpoint,
      payload,
      deadline,
      opts?.signal,
      cached?.key ?? target.service,
      // The policy in force overrides what instances publish in discovery.
      fromPolicy?.idempotent ?? cached?.route.idempotent.has(endpoint) ?? false,
      // null: the policy's limits replace discovery's and name none for this caller.
      policyOr(this.options.policyRateLimit?.(target.service), cached?.rateLimit),
      this.transport.nextRequestId(),
      startedAt,
      opts?.trace,
    );
    if (notFound) {
      // Nothing to send: traced and measured like any failure, but kept away from policy,
      // limits, breakers (a breaker would count it as an answer) and retries.
      const observe = this.options.observe;
      return observe ? observe(ctx, () => Promise.reject(notFound)) : Promise.reject(notFound);
    }
    if (opts?.retry) this.callOverrides.set(ctx, mergeCallSettings(base, { retry: opts.retry }));
    this.handedRoute = cached;
    this.handedTo = ctx;
    try {
      return this.pipeline(ctx);
    } finally {
      this.handedRoute = undefined;
      this.handedTo = undefined;
    }
  }

  /** The terminal step, once per attempt. */
  private send(ctx: CallContext): Promise<unknown> {
    // start() clears the hand-off once the pipeline returns: later attempts look it up.
    const cached = ctx === this.handedTo && ctx.attempt <= 1 ? this.handedRoute : this.cachedRoute(ctx.target, Date.now());
    if (cached) return this.sendOn(cached, ctx);
    return this.resolve(ctx.target).then((fresh) => this.sendOn(fresh, ctx));
  }

  private sendOn(route: CachedRoute, ctx: CallContext): Promise<unknown> {
    let subject = route.weighted ? this.weightedSubject(route, route.weighted, ctx.endpoint) : route.subjects.get(ctx.endpoint);
    if (subject === undefined) {
      if (!route.route.endpoints.has(ctx.endpoint)) return Promise.reject(unknownEndpoint(ctx.target, ctx.endpoint, route.route));
      subject = `${route.route.lane}.${ctx.endpoint}`;
      route.subjects.set(ctx.endpoint, subject);
    }
    const lines = this.options.headerLines?.(ctx.target.service);
    let body: Uint8Array;
    try {
      // Shared: the transport copies it into the message before anything else encodes.
      body = encodeBodyShared(ctx.payload);
    } catch (e) {
      return Promise.reject(new MeshError("BAD_REQUEST", `payload for ${subject} cannot be encoded as msgpack: ${(e as Error).message}`, { cause: e }));
    }
    return this.transport.send(subject, body, ctx, lines);
  }

  private weightedSubject(route: CachedRoute, w: WeightedLanes, endpoint: string): string | undefined {
    let subjects = route.weightedSubjects.get(endpoint);
    if (!subjects) {
      if (!route.route.endpoints.has(endpoint)) return undefined;
      route.weightedSubjects.set(endpoint, (subjects = w.lanes.map((lane) => `${lane}.${endpoint}`)));
    }
    return subjects[pickLane(w, this.random())];
  }

  /** Forgets every resolved route (the policy's traffic weights changed). */
  forgetRoutes(): void {
    this.routes.clear();
  }

  private cachedRoute(target: Target, now: number): CachedRoute | undefined {
    const cached = this.routes.get(target.text);
    if (!cached) return undefined;
    const view = this.registry.peek(target.service, now);
    return view && view.generation === cached.generation ? cached : undefined;
  }

  private async resolve(target: Target): Promise<CachedRoute> {
    const { instances, generation } = await this.registry.running(target.service);
    const route = resolveRoute(target, instances);
    const limits = route.rateLimits;
    const rateLimit = limits ? (limits[this.options.callerName] ?? limits["*"]) : undefined;
    const weighted = weightedLanes(target, route, instances, this.options.trafficFor?.(target.service));
    const cached: CachedRoute = { route, generation, key: `${target.service}.v${route.major}`, rateLimit, subjects: new Map(), weighted, weightedSubjects: new Map() };
    if (this.routes.size >= MAX_CACHED_TARGETS) this.routes.clear();
    this.routes.set(target.text, cached);
    return cached;
  }
}

function policyOr(fromPolicy: RateLimit | null | undefined, published: RateLimit | undefined): RateLimit | undefined {
  return fromPolicy === null ? undefined : (fromPolicy ?? published);
}

function withFallback(result: Promise<unknown>, fallback: Fallback): Promise<unknown> {
  return result.then(undefined, (e: unknown) => {
    if (!isMeshError(e) || !fallback.codes.includes(e.code)) throw e;
    return fallback.compute ? fallback.compute(e) : fallback.value;
  });
}

/** Options deadlineOf does not read, checked before anything is sent (so only when given). */
function checkCallOptions(opts: CallOptions): void {
  if (typeof opts !== "object") throw new MeshError("BAD_REQUEST", `call options must be an object, got ${showValue(opts)}`);
  const fb = opts.fallback;
  if (fb !== undefined) {
    // A string of codes would match by substring; an unknown code would never match.
    if (typeof fb !== "object" || fb === null || !Array.isArray(fb.codes) || !fb.codes.every(isErrorCode)) {
      throw new MeshError("BAD_REQUEST", "fallback must be { codes: [error codes...], value? or compute? }");
    }
    if (fb.compute !== undefined && typeof fb.compute !== "function") throw new MeshError("BAD_REQUEST", "fallback.compute must be a function of the error");
  }
  // The transport would publish first and only then fail on addEventListener.
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw new MeshError("BAD_REQUEST", `signal must be an AbortSignal, got ${showValue(opts.signal)}`);
  if (opts.retry !== undefined) {
    // The bounds connect() enforces: unchecked, attempts: 1e5 with backoffMs: 0 retried for ever.
    const parsed = RetryOption.safeParse(opts);
    if (!parsed.success) {
      const issues = summarizeIssues(parsed.error);
      throw new MeshError("BAD_REQUEST", `invalid call options: ${describeIssues(issues)}`, { details: { issues } });
    }
  }
}

/** Parsed from the whole options, so issue paths start at `retry`. */
const RetryOption = z.object({ retry: RetrySettingsInput });

/**
 * The call's deadline: its own `deadline`, else now + its `timeoutMs`, else now +
 * `defaultTimeoutMs` (checked settings). Options come from users: a string or boolean
 * would be concatenated or coerced onto `now`, so only finite numbers pass.
 */
export function deadlineOf(opts: CallOptions | undefined, now: number, defaultTimeoutMs: number): number {
  if (opts == null) return now + defaultTimeoutMs;
  const t = opts.timeoutMs;
  if (t !== undefined && !(Number.isFinite(t) && t > 0)) throw new MeshError("BAD_REQUEST", `timeoutMs must be a positive number, got ${showValue(t)}`);
  const d = opts.deadline;
  if (d === undefined) return now + (t ?? defaultTimeoutMs);
  // A callee reads an unparseable Mesh-Deadline as none: refuse it here, unsent.
  if (!Number.isFinite(d)) throw new MeshError("BAD_REQUEST", `deadline must be a finite number of ms since the epoch, got ${showValue(d)}`);
  return d;
}

function unknownEndpoint(target: Target, endpoint: string, route: Route): MeshError {
  const why = validEndpointName(endpoint) ? "has no endpoint" : "has no (and cannot have an) endpoint";
  return new MeshError("NOT_FOUND", `${target.text} ${why} ${JSON.stringify(endpoint)} (endpoints: ${[...route.endpoints].sort().join(", ")})`, {
    details: { service: target.service, endpoint, versions: route.versions },
  });
}
