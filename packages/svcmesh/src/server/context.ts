import type { Span } from "@opentelemetry/api";
import type { Logger } from "pino";
import type { AuditWriter } from "../audit/writer.js";
import type { MeshMetrics } from "../telemetry/metrics.js";
import { traceContextOfSpan } from "../telemetry/tracer.js";
import { parseTraceparent, type TraceContext } from "../trace/context.js";
import type { RequestGuard } from "../policy-state.js";
import { type MeshCalls, withinDeadline } from "../calls.js";
import type { FramePublisher } from "../frames.js";
import type { RequestMeta } from "../wire.js";
import type { CallerRateLimiter } from "./rate-limit.js";
import type { HandlerWatch } from "./overdue.js";

/** Why the callee turned a request away without running its handler. */
export type RejectionType = "rate_limited" | "bulkhead_full" | "forbidden" | "unauthenticated";

/** Passed to `ServiceDeps.onRejected` for each request turned away (the events module coalesces them). */
export interface RejectionEvent {
  type: RejectionType;
  service: string;
  endpoint: string;
  caller: string;
}

/** What the mesh's observability gives its serving instances. */
export interface ServerTelemetry {
  /** Make SERVER spans when an OpenTelemetry SDK is registered. */
  tracing: boolean;
  /** A request whose trace is not sampled gets a non-recording span without asking the SDK (tracer.ts unsampledSpan). */
  followParentSampling: boolean;
  metrics: MeshMetrics | undefined;
  /** Stores audit records; undefined when auditing is off for the whole mesh. */
  audit: AuditWriter | undefined;
}

/** What a serving instance shares with every request it handles. */
export interface InstanceScope {
  service: string;
  version: string;
  instance: string;
  logger: Logger;
  calls: MeshCalls;
  /** Per-caller rate limits; undefined when the service configures none. */
  limiter: CallerRateLimiter | undefined;
  /** Authentication and authorization under the policy in force (open when none is). */
  guard: RequestGuard;
  onRejected: ((event: RejectionEvent) => void) | undefined;
  /** originLines() of this instance: every reply names who answered. */
  origin: string;
  /** The header block of successful replies (the origin lines). */
  okHead: Uint8Array;
  /** Sends replies as whole frames (frames.ts). */
  frames: FramePublisher;
  telemetry: ServerTelemetry;
  /** Whether this service writes audit records (and where). */
  audit: boolean;
  auditSubject: string;
  /** Revision of the policy in force, if any. */
  policyRevision(): number | undefined;
  /** The latest deadline of any request handled so far: how long a stop may wait for handlers. */
  latestDeadline: number;
  /** The requests holding bulkhead slots, swept for handlers running well past their deadlines. */
  handlers: HandlerWatch;
}

/** A context's `signal`, once asked for (kept off the class: it is not API). */
interface DeadlineSignal {
  controller: AbortController;
  timer: NodeJS.Timeout | undefined;
}
const deadlineSignals = new WeakMap<HandlerContext, DeadlineSignal>();
/** Whether any context made a signal: until then releasing costs one check. */
let signalsMade = false;
/** Node's timers take at most 2^31-1 ms (~24.8 days): a later deadline does not abort. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Whether a handler failed with its context's deadline abort (as fetch() and most
 * drivers reject with the signal's reason, or wrap it as their error's cause): the
 * handler stopped because the caller gave up, so the answer is TIMEOUT, not HANDLER_ERROR.
 */
export function abortedAtDeadline(ctx: HandlerContext, e: unknown): boolean {
  if (!signalsMade) return false;
  const signal = deadlineSignals.get(ctx)?.controller.signal;
  if (signal === undefined || !signal.aborted) return false;
  return e === signal.reason || (typeof e === "object" && e !== null && (e as { cause?: unknown }).cause === signal.reason);
}

/**
 * The request is over (its handler settled): its signal, if one was made, aborts now
 * (as Go's request contexts are cancelled when the handler returns), so its timer and
 * whatever listens to it are let go instead of living until the deadline.
 */
export function releaseSignal(ctx: HandlerContext): void {
  if (!signalsMade) return;
  const d = deadlineSignals.get(ctx);
  if (d === undefined) return;
  if (d.timer !== undefined) clearTimeout(d.timer);
  d.timer = undefined;
  if (!d.controller.signal.aborted) d.controller.abort(new DOMException("the request has ended", "AbortError"));
}

/** The second argument of every handler. Logger and nested-call surface are made on first use. */
export class HandlerContext {
  readonly caller: string;
  readonly deadline: number;
  readonly requestId: string;
  private childLogger: Logger | undefined;
  private nested: MeshCalls | undefined;
  private traceContext: TraceContext | undefined | null = null;

  constructor(
    private readonly scope: InstanceScope,
    readonly endpoint: string,
    private readonly meta: RequestMeta,
    private readonly span: Span | undefined,
  ) {
    this.caller = meta.caller;
    this.deadline = meta.deadline;
    this.requestId = meta.requestId;
  }

  /**
   * The trace this request belongs to (W3C ids), or undefined when the caller sent
   * none. With an OpenTelemetry SDK it points at this request's SERVER span; nested
   * calls through `ctx.mesh` continue it.
   */
  get trace(): TraceContext | undefined {
    if (this.traceContext === null) {
      this.traceContext = this.span ? traceContextOfSpan(this.span, this.meta.tracestate) : parseTraceparent(this.meta.traceparent, this.meta.tracestate);
    }
    return this.traceContext;
  }

  get service(): string {
    return this.scope.service;
  }

  get version(): string {
    return this.scope.version;
  }

  /** The id of the instance handling this request. */
  get instance(): string {
    return this.scope.instance;
  }

  /** Milliseconds left before the caller gives up. */
  get remainingMs(): number {
    return Math.max(0, this.deadline - Date.now());
  }

  /**
   * Aborted when the caller gives up (this request's deadline), its reason a
   * `TimeoutError`: pass it to fetch(), database drivers and timers so that work nobody
   * waits for stops, and frees its bulkhead slot. Also aborted (an `AbortError`) once the
   * handler has settled: work it started and left running is over too. Made on first use.
   */
  get signal(): AbortSignal {
    let d = deadlineSignals.get(this);
    if (d === undefined) {
      const controller = new AbortController();
      const abort = () => controller.abort(new DOMException("the request's deadline has passed", "TimeoutError"));
      const remaining = this.remainingMs;
      d = { controller, timer: undefined };
      if (remaining === 0) abort();
      else if (remaining <= MAX_TIMER_MS) d.timer = setTimeout(abort, remaining).unref();
      deadlineSignals.set(this, d);
      signalsMade = true;
    }
    return d.controller.signal;
  }

  get logger(): Logger {
    this.childLogger ??= this.scope.logger.child({ endpoint: this.endpoint, caller: this.caller, requestId: this.requestId });
    return this.childLogger;
  }

  /** Calls to other services from this handler; they inherit this request's deadline and trace. */
  get mesh(): MeshCalls {
    this.nested ??= withinDeadline(this.scope.calls, this.deadline, this.trace);
    return this.nested;
  }
}
