import type { Logger } from "pino";
import type { RequestGuard } from "../policy-state.js";
import { type MeshCalls, withinDeadline } from "../calls.js";
import type { RequestMeta } from "../wire.js";
import type { CallerRateLimiter } from "./rate-limit.js";

/** Why the callee turned a request away without running its handler. */
export type RejectionType = "rate_limited" | "bulkhead_full";

/** Passed to `ServiceDeps.onRejected` for each request turned away (the events module coalesces them). */
export interface RejectionEvent {
  type: RejectionType;
  service: string;
  endpoint: string;
  caller: string;
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
}

/** The second argument of every handler. Logger and nested-call surface are made on first use. */
export class HandlerContext {
  readonly caller: string;
  readonly deadline: number;
  readonly requestId: string;
  private childLogger: Logger | undefined;
  private nested: MeshCalls | undefined;

  constructor(
    private readonly scope: InstanceScope,
    readonly endpoint: string,
    meta: RequestMeta,
  ) {
    this.caller = meta.caller;
    this.deadline = meta.deadline;
    this.requestId = meta.requestId;
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

  get logger(): Logger {
    this.childLogger ??= this.scope.logger.child({ endpoint: this.endpoint, caller: this.caller, requestId: this.requestId });
    return this.childLogger;
  }

  /** Calls to other services from this handler; they inherit this request's deadline. */
  get mesh(): MeshCalls {
    this.nested ??= withinDeadline(this.scope.calls, this.deadline);
    return this.nested;
  }
}
