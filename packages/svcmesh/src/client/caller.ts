// The caller side of a call: target → route → request → reply. Interceptors
// (policy, rate limit, breaker, retry, trace) wrap `send` in pipeline order.
import { MeshError } from "../errors.js";
import type { Registry } from "../registry.js";
import { parseTarget, resolveRoute, type Route, type Target } from "../target.js";
import { validEndpointName } from "../subjects.js";
import { encodeBody } from "../wire.js";
import type { RequestTransport } from "./transport.js";

export interface CallOptions {
  /** Budget for this call; ignored when `deadline` is given. */
  timeoutMs?: number;
  /** Absolute deadline (ms since the epoch); nested calls pass their parent's. */
  deadline?: number;
  /** Cancels the call; it then fails with TIMEOUT (not retryable). */
  signal?: AbortSignal;
}

interface CachedRoute {
  route: Route;
  generation: number;
  /** Subjects per endpoint, so the hot path builds no strings. */
  subjects: Map<string, string>;
}

/** Bounds the caches keyed by user-supplied strings. */
const MAX_CACHED_TARGETS = 1024;

export class Caller {
  private readonly targets = new Map<string, Target>();
  private readonly routes = new Map<string, CachedRoute>();

  constructor(
    private readonly registry: Registry,
    private readonly transport: RequestTransport,
    private readonly defaultTimeoutMs: number,
  ) {}

  parse(text: string): Target {
    let t = this.targets.get(text);
    if (!t) {
      t = parseTarget(text);
      if (this.targets.size >= MAX_CACHED_TARGETS) this.targets.clear();
      this.targets.set(text, t);
    }
    return t;
  }

  /** Not async on purpose: a call with a cached route costs one promise, the transport's. */
  call(targetText: string, endpoint: string, payload: unknown, opts: CallOptions | undefined): Promise<unknown> {
    try {
      const target = this.parse(targetText);
      const now = Date.now();
      const deadline = deadlineOf(opts, now, this.defaultTimeoutMs);
      if (deadline <= now) throw new MeshError("TIMEOUT", `deadline for ${target.text}.${endpoint} passed before the call was sent`);
      const cached = this.cachedRoute(target, now);
      if (cached) return this.send(cached, target, endpoint, payload, deadline, opts?.signal);
      return this.resolve(target).then((fresh) => this.send(fresh, target, endpoint, payload, deadline, opts?.signal));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private send(route: CachedRoute, target: Target, endpoint: string, payload: unknown, deadline: number, signal: AbortSignal | undefined): Promise<unknown> {
    let subject = route.subjects.get(endpoint);
    if (subject === undefined) {
      if (!route.route.endpoints.has(endpoint)) throw unknownEndpoint(target, endpoint, route.route);
      subject = `${route.route.lane}.${endpoint}`;
      route.subjects.set(endpoint, subject);
    }
    let body: Uint8Array;
    try {
      body = encodeBody(payload);
    } catch (e) {
      throw new MeshError("BAD_REQUEST", `payload for ${subject} cannot be encoded as msgpack: ${(e as Error).message}`, { cause: e });
    }
    return this.transport.send(subject, body, deadline, signal);
  }

  private cachedRoute(target: Target, now: number): CachedRoute | undefined {
    const cached = this.routes.get(target.text);
    if (!cached) return undefined;
    const view = this.registry.peek(target.service, now);
    return view && view.generation === cached.generation ? cached : undefined;
  }

  private async resolve(target: Target): Promise<CachedRoute> {
    const { instances, generation } = await this.registry.running(target.service);
    const cached: CachedRoute = { route: resolveRoute(target, instances), generation, subjects: new Map() };
    if (this.routes.size >= MAX_CACHED_TARGETS) this.routes.clear();
    this.routes.set(target.text, cached);
    return cached;
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
