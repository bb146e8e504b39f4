// A serving instance: one NATS services-framework service (so $SRV discovery works
// with stock tooling), one endpoint subscription per endpoint on the major lane in the
// service-and-major queue group, plus the exact-version lane.
import type { Msg, NatsConnection, Service, Subscription } from "nats";
import type { z } from "zod";
import semver from "semver";
import type { Logger } from "pino";
import type { MeshCalls } from "../calls.js";
import { type PolicyState, RequestGuard } from "../policy-state.js";
import { policyMaxConcurrent, policyRateLimits, settingsFor as policySettingsFor } from "../policy/authorize.js";
import { isMeshError, MeshError } from "../errors.js";
import { INSTANCE_STARTED, INSTANCE_STOPPED, type InstanceAnnouncement, MESH_METADATA_KEY, type Registry } from "../registry.js";
import { type Schema, isSchema, jsonSchemaText } from "../schema.js";
import { EVENTS_ROOT, exactLane, majorLane, queueGroup, validEndpointName, validServiceName } from "../subjects.js";
import type { RateLimit } from "../settings.js";
import { FramePublisher } from "../frames.js";
import { encodeBody, headerBlock, originLines } from "../wire.js";
import { auditSubject } from "../audit/record.js";
import type { HandlerContext, InstanceScope, RejectionEvent, ServerTelemetry } from "./context.js";
import { type EndpointRuntime, type Handler, endpointRuntime, handleRequest, replyError } from "./endpoint.js";
import { ANY_CALLER, CallerRateLimiter, resolvedLimits } from "./rate-limit.js";
import { HandlerWatch, type OverdueTiming } from "./overdue.js";

type InputOf<I> = I extends Schema ? z.output<I> : unknown;
type OutputOf<O> = O extends Schema ? z.input<O> : unknown;

/** One endpoint: zod schemas for input and output, and the handler they type. */

/** After the last deadline, how long a stop still waits for a handler's reply. */
const STOP_GRACE_MS = 250;
/** A stop never waits longer than this for handlers (a caller may send any deadline). */
const STOP_BUDGET_MS = 10_000;
export interface EndpointSpec<I = Schema | undefined, O = Schema | undefined> {
  input?: I;
  output?: O;
  description?: string;
  /**
   * Safe to run twice: callers may then retry it after a TIMEOUT or UNAVAILABLE.
   * Published in discovery. Default false.
   */
  idempotent?: boolean;
  /**
   * Bulkhead: at most this many requests of this endpoint in flight per instance; the
   * next is answered UNAVAILABLE at once, without running the handler. Default: no cap.
   */
  maxConcurrent?: number;
  // Method syntax on purpose: endpoint objects declared apart from serve() with
  // annotated handlers must still be accepted.
  handler(input: InputOf<I>, ctx: HandlerContext): OutputOf<O> | Promise<OutputOf<O>>;
}

/**
 * What `serve()` takes. The two maps are inferred from the endpoints object, so a
 * handler's input is typed by its input schema and its return by its output schema.
 */
export interface ServeOptions<I = Record<string, unknown>, O = Record<string, unknown>> {
  name: string;
  version: string;
  description?: string;
  /**
   * Per-caller limits on requests to this service, enforced here (the callee), keyed by
   * caller name; "*" limits each caller not named (without it they are not limited).
   * They hold for the service as a whole: each of N running instances enforces 1/N.
   * Published in discovery (`rate_limits`) so callers can mirror them.
   */
  rateLimits?: Record<string, RateLimit>;
  /**
   * Write an audit record for every call whose handler ran, to svc.audit.<name>
   * (stored once per request id in the SVC_AUDIT stream). Default true; the mesh's
   * `connect({ audit: { enabled: false } })` turns it off for every service.
   */
  audit?: boolean;
  endpoints: { [K in keyof I]: EndpointSpec<I[K], K extends keyof O ? O[K] : undefined> } & { [K in keyof O]: { output?: O[K]; [more: string]: unknown } };
}

export interface ServiceHandle {
  readonly name: string;
  readonly version: string;
  /** This instance's id, as $SRV discovery reports it. */
  readonly id: string;
  /** Requests being handled right now. */
  readonly inFlight: number;
  /**
   * Of those, the ones whose handler is still running well past its request's deadline
   * (5 s): each still holds its bulkhead slot, and was logged as a warning.
   */
  readonly overdue: number;
  /** Stops taking requests, finishes and answers the ones already received. */
  stop(): Promise<void>;
  /**
   * Settles when this instance stops serving: undefined after stop(), or the error that
   * stopped it (e.g. the server refused its subscriptions: wrong credentials). A process
   * that serves nothing else should then exit, so its supervisor restarts or alerts.
   */
  readonly stopped: Promise<Error | undefined>;
}

/** What the mesh sees of its own instances (metrics read their load). */
export interface InstanceHandle extends ServiceHandle {
  /** (service, endpoint, requests in flight, of those overdue) per endpoint. */
  endpointLoads(): Iterable<readonly [string, string, number, number]>;
}

export interface ServiceDeps {
  nc: NatsConnection;
  /** Discovery, e.g. to know how many instances of this service share a limit. */
  registry: Registry;
  /** The policy in force (shared with the caller side of the same mesh). */
  policy: PolicyState;
  logger: Logger;
  calls: MeshCalls;
  defaultTimeoutMs: number;
  onStopped?: (handle: ServiceHandle) => void;
  telemetry: ServerTelemetry;
  /** Called for each request turned away by a rate limit or a bulkhead (not awaited; keep it cheap). */
  onRejected?: (event: RejectionEvent) => void;
  /**
   * Sends an instance announcement (svc.events.instance_*). The mesh routes them through
   * its event sender, so they are stored in SVC_EVENTS even across a NATS failover;
   * default: a plain publish.
   */
  announce?: (subject: string, body: Uint8Array) => void;
  /** When handlers count as overdue, and how often that is checked and logged (tests shorten it). */
  overdue?: OverdueTiming;
}

export function validateServeOptions(spec: ServeOptions): void {
  const bad = (what: string) => new MeshError("BAD_REQUEST", `serve(): ${what}`);
  if (typeof spec !== "object" || spec === null) throw bad("options must be an object");
  if (typeof spec.name !== "string" || !validServiceName(spec.name)) {
    throw bad(`invalid service name ${JSON.stringify(spec.name)}: use [a-z0-9-]+ and not trace, events or audit`);
  }
  // semver.valid() trims spaces, but the version also names a subject (its exact lane):
  // only the characters a semver is written with, or nats-server drops the connection.
  if (typeof spec.version !== "string" || semver.valid(spec.version) === null || !/^[0-9A-Za-z.+-]+$/.test(spec.version)) {
    throw bad(`version ${JSON.stringify(spec.version)} of ${spec.name} is not semver (like "2.1.0", no spaces)`);
  }
  const names = Object.keys(spec.endpoints ?? {});
  if (names.length === 0) throw bad(`${spec.name} has no endpoints`);
  for (const name of names) {
    const ep = (spec.endpoints as Record<string, EndpointSpec>)[name]!;
    if (!validEndpointName(name)) throw bad(`invalid endpoint name ${JSON.stringify(name)}: use [A-Za-z0-9_-]+`);
    if (typeof ep?.handler !== "function") throw bad(`endpoint ${name} has no handler function`);
    if (ep.input !== undefined && !isSchema(ep.input)) throw bad(`endpoint ${name}: input must be a zod schema`);
    if (ep.output !== undefined && !isSchema(ep.output)) throw bad(`endpoint ${name}: output must be a zod schema`);
    if (ep.idempotent !== undefined && typeof ep.idempotent !== "boolean") throw bad(`endpoint ${name}: idempotent must be true or false (got ${show(ep.idempotent)})`);
    if (ep.maxConcurrent !== undefined && !(Number.isInteger(ep.maxConcurrent) && ep.maxConcurrent >= 1)) {
      throw bad(`endpoint ${name}: maxConcurrent must be a whole number ≥ 1 (got ${show(ep.maxConcurrent)}); leave it out for no cap`);
    }
  }
  validateRateLimits(spec.name, spec.rateLimits, bad);
  if (spec.audit !== undefined && typeof spec.audit !== "boolean") throw bad(`audit must be true or false (got ${show(spec.audit)})`);
}

function validateRateLimits(service: string, limits: unknown, bad: (what: string) => MeshError): void {
  if (limits === undefined) return;
  if (typeof limits !== "object" || limits === null || Array.isArray(limits)) {
    throw bad(`rateLimits of ${service} must be an object: caller name (or "*") → { rps, burst? }`);
  }
  for (const [caller, l] of Object.entries(limits)) {
    const where = `rateLimits[${JSON.stringify(caller)}] of ${service}`;
    if (caller === "") throw bad(`rateLimits of ${service}: a caller name cannot be empty (use "${ANY_CALLER}" for callers not named)`);
    if (typeof l !== "object" || l === null || Array.isArray(l)) throw bad(`${where} must be { rps, burst? }`);
    for (const key of Object.keys(l)) {
      if (key !== "rps" && key !== "burst") throw bad(`${where}: unknown key ${JSON.stringify(key)} (only rps and burst)`);
    }
    const { rps, burst } = l as { rps?: unknown; burst?: unknown };
    if (typeof rps !== "number" || !Number.isFinite(rps) || rps <= 0) throw bad(`${where}: rps must be a positive number of requests per second (got ${show(rps)})`);
    if (burst !== undefined && (typeof burst !== "number" || !Number.isFinite(burst) || burst < 1)) {
      throw bad(`${where}: burst must be a number ≥ 1 (got ${show(burst)})`);
    }
  }
}

function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

export async function startService(deps: ServiceDeps, spec: ServeOptions): Promise<InstanceHandle> {
  validateServeOptions(spec);
  const instance = new Instance(deps, spec);
  try {
    await instance.start();
  } catch (e) {
    // Half started (the connection closed, a subscription was refused): nothing of it
    // may stay subscribed or listed in discovery.
    await instance.abandon();
    throw isMeshError(e) ? e : new MeshError("UNAVAILABLE", `serve(): ${spec.name}@${spec.version} could not start: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
  return instance;
}

class Instance implements InstanceHandle {
  readonly name: string;
  readonly version: string;
  private readonly endpoints = new Map<string, EndpointRuntime>();
  private micro: Service | undefined;
  private exactSub: Subscription | undefined;
  private scope!: InstanceScope;
  private limiter: CallerRateLimiter | undefined;
  private handlers: HandlerWatch | undefined;
  /** The rate limits in force, as JSON, so an unchanged policy rebuilds nothing. */
  private limitsKey: string | undefined;
  private disposePolicy: (() => void) | undefined;
  private active = 0;
  private idle: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  private announced = false;
  private settleStopped!: (err: Error | undefined) => void;
  readonly stopped = new Promise<Error | undefined>((resolve) => (this.settleStopped = resolve));

  constructor(private readonly deps: ServiceDeps, private readonly spec: ServeOptions) {
    this.name = spec.name;
    this.version = spec.version;
    for (const [name, ep] of Object.entries(spec.endpoints as Record<string, EndpointSpec>)) {
      this.endpoints.set(name, endpointRuntime(name, ep.input, ep.output, ep.handler as Handler, ep.maxConcurrent));
    }
  }

  get id(): string {
    return this.micro?.info().id ?? "";
  }

  get inFlight(): number {
    return this.active;
  }

  get overdue(): number {
    let n = 0;
    for (const ep of this.endpoints.values()) n += ep.overdue;
    return n;
  }

  *endpointLoads(): Iterable<readonly [string, string, number, number]> {
    for (const [name, ep] of this.endpoints) yield [this.name, name, ep.inFlight, ep.overdue];
  }

  private endpointStats(name: string): { in_flight: number; overdue: number } | null {
    const ep = this.endpoints.get(name);
    return ep ? { in_flight: ep.inFlight, overdue: ep.overdue } : null;
  }

  async start(): Promise<void> {
    const { nc } = this.deps;
    const lane = majorLane(this.name, semver.major(this.version));
    const limits = this.spec.rateLimits !== undefined && Object.keys(this.spec.rateLimits).length > 0 ? this.spec.rateLimits : undefined;
    this.micro = await nc.services.add({
      name: this.name,
      version: this.version,
      description: this.spec.description ?? "",
      // rate_limits: service-wide, burst filled in, so callers can mirror them.
      metadata: { [MESH_METADATA_KEY]: "1", ...(limits ? { rate_limits: JSON.stringify(resolvedLimits(limits)) } : {}) },
      queue: queueGroup(lane),
      // $SRV.STATS (`nats micro stats`): each endpoint's load, both lanes together.
      statsHandler: (e) => Promise.resolve(this.endpointStats(e.subject.slice(lane.length + 1))),
    });
    const id = this.micro.info().id;
    const logger = this.deps.logger.child({ service: this.name, version: this.version, instance: id });
    const origin = originLines(id, this.version);
    if (limits) this.limiter = new CallerRateLimiter({ service: this.name, limits, registry: this.deps.registry, logger, self: () => this.id, major: semver.major(this.version) });
    this.limitsKey = JSON.stringify(this.spec.rateLimits ?? null);
    this.handlers = new HandlerWatch(logger, this.name, this.deps.overdue);
    this.scope = {
      service: this.name,
      version: this.version,
      instance: id,
      logger,
      calls: this.deps.calls,
      limiter: this.limiter,
      guard: new RequestGuard(this.name, this.deps.policy),
      onRejected: this.deps.onRejected,
      origin,
      okHead: headerBlock(origin).encode(),
      frames: new FramePublisher(this.deps.nc),
      telemetry: this.deps.telemetry,
      audit: this.spec.audit !== false && this.deps.telemetry.audit !== undefined,
      auditSubject: auditSubject(this.name),
      policyRevision: () => this.deps.policy.inForce?.revision,
      latestDeadline: 0,
      handlers: this.handlers,
    };
    for (const [name, ep] of this.endpoints) {
      const spec = (this.spec.endpoints as Record<string, EndpointSpec>)[name]!;
      this.micro.addEndpoint(name, {
        subject: `${lane}.${name}`,
        handler: (err, msg) => {
          if (!err) this.dispatch(ep, msg);
        },
        metadata: {
          input_schema: jsonSchemaText(spec.input, "input"),
          output_schema: jsonSchemaText(spec.output, "output"),
          idempotent: spec.idempotent === true ? "true" : "false",
          ...(spec.maxConcurrent !== undefined ? { max_concurrent: String(spec.maxConcurrent) } : {}),
          ...(spec.description ? { description: spec.description } : {}),
        },
      });
    }
    const exact = exactLane(this.name, this.version);
    this.exactSub = nc.subscribe(`${exact}.*`, {
      queue: queueGroup(exact),
      callback: (err, msg) => {
        if (!err) this.dispatchExact(exact, msg);
      },
    });
    this.micro.stopped.then((err) => {
      if (err && !this.stopping) this.scope.logger.error({ err }, "service stopped unexpectedly");
      this.settleStopped(err && !this.stopping ? (err as Error) : undefined);
    }, (err: unknown) => this.settleStopped(err as Error));
    await nc.flush(); // subscriptions are live at the server before anyone hears of us
    this.announce(INSTANCE_STARTED);
    this.announced = true;
    // Until the count is in, this instance enforces the whole limit: serve() waits for it
    // (one discovery query, bounded by discovery's maxWaitMs) so shares hold from the start.
    await this.limiter?.start();
    this.disposePolicy = this.deps.policy.onChange(() => void this.followPolicy());
    await this.followPolicy();
  }

  /**
   * The policy in force overrides this instance's own settings, live: per-caller rate
   * limits and per-endpoint bulkheads (code values hold where the policy says nothing).
   */
  private async followPolicy(): Promise<void> {
    const p = this.deps.policy.inForce;
    const fromPolicy = p ? policySettingsFor(p.document, this.name) : undefined;
    for (const [name, ep] of this.endpoints) {
      const own = (this.spec.endpoints as Record<string, EndpointSpec>)[name]!.maxConcurrent;
      ep.maxConcurrent = policyMaxConcurrent(fromPolicy, name) ?? own ?? Infinity;
    }
    const wanted = policyRateLimits(fromPolicy) ?? this.spec.rateLimits;
    const key = JSON.stringify(wanted ?? null);
    if (key === this.limitsKey || this.stopping) return;
    this.limitsKey = key;
    const next = wanted && Object.keys(wanted).length > 0
      ? new CallerRateLimiter({ service: this.name, limits: wanted, registry: this.deps.registry, logger: this.scope.logger, self: () => this.id, major: semver.major(this.version) })
      : undefined;
    // In force at once; until its first count of instances is in, it enforces the whole
    // limit (as at startup), then this instance's share.
    const previous = this.limiter;
    next?.adopt(previous);
    this.limiter = next;
    this.scope.limiter = next;
    previous?.stop();
    await next?.start();
  }

  stop(): Promise<void> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  /** Undoes a start that failed part way; never throws. */
  async abandon(): Promise<void> {
    this.stopping ??= Promise.resolve();
    this.disposePolicy?.();
    this.limiter?.stop();
    this.handlers?.close();
    const { nc } = this.deps;
    if (this.announced && !nc.isClosed()) this.announce(INSTANCE_STOPPED);
    try {
      this.exactSub?.unsubscribe();
    } catch {
      // the connection is gone: so is the subscription
    }
    await this.micro?.stop().catch(() => undefined);
  }

  private async drain(): Promise<void> {
    const { nc } = this.deps;
    this.disposePolicy?.();
    this.limiter?.stop();
    if (!nc.isClosed()) this.announce(INSTANCE_STOPPED);
    // Draining unsubscribes, then still hands over what already reached this client.
    await Promise.allSettled([this.micro?.stop(), nc.isClosed() ? undefined : this.exactSub?.drain()]);
    if (this.active > 0 && !(await this.handlersSettled())) {
      this.scope.logger.error({ abandoned: this.active }, `stopped with ${this.active} handler(s) still running past their requests' deadlines (their callers have given up on them)`);
    }
    this.handlers?.close();
    this.deps.onStopped?.(this);
    this.settleStopped(undefined);
  }

  /** Waits for the handlers running, no longer than their requests' deadlines (bounded): whether they all settled. */
  private handlersSettled(): Promise<boolean> {
    const waitMs = Math.min(Math.max(0, this.scope.latestDeadline - Date.now()) + STOP_GRACE_MS, STOP_BUDGET_MS);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), waitMs);
      this.idle = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  private dispatchExact(lane: string, msg: Msg): void {
    const name = msg.subject.slice(lane.length + 1);
    const ep = this.endpoints.get(name);
    if (ep) this.dispatch(ep, msg);
    else replyError(this.scope, msg, new MeshError("NOT_FOUND", `${this.name}@${this.version} has no endpoint ${JSON.stringify(name)}`));
  }

  private dispatch(ep: EndpointRuntime, msg: Msg): void {
    this.active++;
    void handleRequest(this.scope, ep, msg, this.deps.defaultTimeoutMs, this.settled);
  }

  private readonly settled = (): void => {
    if (--this.active === 0 && this.idle) this.idle();
  };

  private announce(type: string): void {
    const a: InstanceAnnouncement = { service: this.name, id: this.id, version: this.version, endpoints: [...this.endpoints.keys()] };
    const subject = `${EVENTS_ROOT}.${type}.${this.name}`;
    try {
      if (this.deps.announce) this.deps.announce(subject, encodeBody(a));
      else this.deps.nc.publish(subject, encodeBody(a));
    } catch (e) {
      this.scope.logger.warn({ err: e }, `could not announce ${type}`);
    }
  }
}
