// The caller side of a call: target → route → request → reply. Interceptors
// (policy, rate limit, breaker, retry, trace) wrap `send` in pipeline order.
import { MeshError, isMeshError } from "../errors.js";
import type { Registry } from "../registry.js";
import { parseTarget, resolveRoute, type Route, type Target } from "../target.js";
import { validEndpointName } from "../subjects.js";
import { RequestHeaders, callerHeaderLine, decodeReply, encodeBody } from "../wire.js";
import type { RequestTransport } from "./transport.js";

export interface CallOptions {
  /** Budget for this call; ignored when `deadline` is given. */
  timeoutMs?: number;
  /** Absolute deadline (ms since the epoch); nested calls pass their parent's. */
  deadline?: number;
  /** Cancels the call; it then fails with TIMEOUT (not retryable). */
  signal?: AbortSignal;
}

export interface CallerOptions {
  callerName: string;
  defaultTimeoutMs: number;
}

interface CachedRoute {
  route: Route;
  generation: number;
}

/** Bounds the caches keyed by user-supplied strings. */
const MAX_CACHED_TARGETS = 1024;

export class Caller {
  private readonly callerLine: string;
  private readonly targets = new Map<string, Target>();
  private readonly routes = new Map<string, CachedRoute>();

  constructor(
    private readonly registry: Registry,
    private readonly transport: RequestTransport,
    private readonly options: CallerOptions,
  ) {
    this.callerLine = callerHeaderLine(options.callerName);
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

  async call(targetText: string, endpoint: string, payload: unknown, opts: CallOptions | undefined): Promise<unknown> {
    const target = this.parse(targetText);
    const now = Date.now();
    const deadline = deadlineOf(opts, now, this.options.defaultTimeoutMs);
    if (deadline <= now) throw new MeshError("TIMEOUT", `deadline for ${target.text}.${endpoint} passed before the call was sent`);
    const route = this.cachedRoute(target, now) ?? (await this.resolve(target));
    if (!route.endpoints.has(endpoint)) throw unknownEndpoint(target, endpoint, route);
    const subject = `${route.lane}.${endpoint}`;
    let body: Uint8Array;
    try {
      body = encodeBody(payload);
    } catch (e) {
      throw new MeshError("BAD_REQUEST", `payload for ${subject} cannot be encoded as msgpack: ${(e as Error).message}`, { cause: e });
    }
    const token = this.transport.nextToken();
    const headers = new RequestHeaders(this.callerLine, deadline, this.transport.requestId(token));
    const msg = await this.transport.send(subject, token, body, { headers, deadline, signal: opts?.signal });
    try {
      return decodeReply(msg, subject);
    } catch (e) {
      if (isMeshError(e) && e.code === "NO_RESPONDERS") this.registry.invalidate(target.service);
      throw e;
    }
  }

  private cachedRoute(target: Target, now: number): Route | undefined {
    const cached = this.routes.get(target.text);
    if (!cached) return undefined;
    const view = this.registry.peek(target.service, now);
    return view && view.generation === cached.generation ? cached.route : undefined;
  }

  private async resolve(target: Target): Promise<Route> {
    const { instances, generation } = await this.registry.running(target.service);
    const route = resolveRoute(target, instances);
    if (this.routes.size >= MAX_CACHED_TARGETS) this.routes.clear();
    this.routes.set(target.text, { route, generation });
    return route;
  }
}

function deadlineOf(opts: CallOptions | undefined, now: number, defaultTimeoutMs: number): number {
  if (opts?.deadline !== undefined) return opts.deadline;
  const t = opts?.timeoutMs ?? defaultTimeoutMs;
  if (!(t > 0)) throw new MeshError("BAD_REQUEST", `timeoutMs must be a positive number, got ${String(t)}`);
  return now + t;
}

function unknownEndpoint(target: Target, endpoint: string, route: Route): MeshError {
  const why = validEndpointName(endpoint) ? "has no endpoint" : "has no (and cannot have an) endpoint";
  return new MeshError("NOT_FOUND", `${target.text} ${why} ${JSON.stringify(endpoint)} (endpoints: ${[...route.endpoints].sort().join(", ")})`, {
    details: { service: target.service, endpoint, versions: route.versions },
  });
}
