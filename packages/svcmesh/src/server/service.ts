// A serving instance: one NATS services-framework service (so $SRV discovery works
// with stock tooling), one endpoint subscription per endpoint on the major lane in the
// service-and-major queue group, plus the exact-version lane.
import type { Msg, NatsConnection, Service, Subscription } from "nats";
import type { z } from "zod";
import semver from "semver";
import type { Logger } from "pino";
import type { MeshCalls } from "../calls.js";
import { MeshError } from "../errors.js";
import { INSTANCE_STARTED, INSTANCE_STOPPED, type InstanceAnnouncement, MESH_METADATA_KEY, type Registry } from "../registry.js";
import { type Schema, isSchema, jsonSchemaText } from "../schema.js";
import { EVENTS_ROOT, exactLane, majorLane, queueGroup, validEndpointName, validServiceName } from "../subjects.js";
import { encodeBody } from "../wire.js";
import type { HandlerContext, InstanceScope } from "./context.js";
import { type EndpointRuntime, type Handler, endpointRuntime, handleRequest, replyError } from "./endpoint.js";

type InputOf<I> = I extends Schema ? z.output<I> : unknown;
type OutputOf<O> = O extends Schema ? z.input<O> : unknown;

/** One endpoint: zod schemas for input and output, and the handler they type. */
export interface EndpointSpec<I = Schema | undefined, O = Schema | undefined> {
  input?: I;
  output?: O;
  description?: string;
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
  endpoints: { [K in keyof I]: EndpointSpec<I[K], K extends keyof O ? O[K] : undefined> } & { [K in keyof O]: { output?: O[K]; [more: string]: unknown } };
}

export interface ServiceHandle {
  readonly name: string;
  readonly version: string;
  /** This instance's id, as $SRV discovery reports it. */
  readonly id: string;
  /** Requests being handled right now. */
  readonly inFlight: number;
  /** Stops taking requests, finishes and answers the ones already received. */
  stop(): Promise<void>;
}

export interface ServiceDeps {
  nc: NatsConnection;
  /** Discovery, e.g. to know how many instances of this service share a limit. */
  registry: Registry;
  logger: Logger;
  calls: MeshCalls;
  defaultTimeoutMs: number;
  onStopped?: (handle: ServiceHandle) => void;
}

export function validateServeOptions(spec: ServeOptions): void {
  const bad = (what: string) => new MeshError("BAD_REQUEST", `serve(): ${what}`);
  if (typeof spec !== "object" || spec === null) throw bad("options must be an object");
  if (typeof spec.name !== "string" || !validServiceName(spec.name)) {
    throw bad(`invalid service name ${JSON.stringify(spec.name)}: use [a-z0-9-]+ and not trace, events or audit`);
  }
  if (typeof spec.version !== "string" || semver.valid(spec.version) === null) {
    throw bad(`version ${JSON.stringify(spec.version)} of ${spec.name} is not semver (like "2.1.0")`);
  }
  const names = Object.keys(spec.endpoints ?? {});
  if (names.length === 0) throw bad(`${spec.name} has no endpoints`);
  for (const name of names) {
    const ep = (spec.endpoints as Record<string, EndpointSpec>)[name]!;
    if (!validEndpointName(name)) throw bad(`invalid endpoint name ${JSON.stringify(name)}: use [A-Za-z0-9_-]+`);
    if (typeof ep?.handler !== "function") throw bad(`endpoint ${name} has no handler function`);
    if (ep.input !== undefined && !isSchema(ep.input)) throw bad(`endpoint ${name}: input must be a zod schema`);
    if (ep.output !== undefined && !isSchema(ep.output)) throw bad(`endpoint ${name}: output must be a zod schema`);
  }
}

export async function startService(deps: ServiceDeps, spec: ServeOptions): Promise<ServiceHandle> {
  validateServeOptions(spec);
  const instance = new Instance(deps, spec);
  await instance.start();
  return instance;
}

class Instance implements ServiceHandle {
  readonly name: string;
  readonly version: string;
  private readonly endpoints = new Map<string, EndpointRuntime>();
  private micro: Service | undefined;
  private exactSub: Subscription | undefined;
  private scope!: InstanceScope;
  private active = 0;
  private idle: (() => void) | undefined;
  private stopping: Promise<void> | undefined;

  constructor(private readonly deps: ServiceDeps, private readonly spec: ServeOptions) {
    this.name = spec.name;
    this.version = spec.version;
    for (const [name, ep] of Object.entries(spec.endpoints as Record<string, EndpointSpec>)) {
      this.endpoints.set(name, endpointRuntime(name, ep.input, ep.output, ep.handler as Handler));
    }
  }

  get id(): string {
    return this.micro?.info().id ?? "";
  }

  get inFlight(): number {
    return this.active;
  }

  async start(): Promise<void> {
    const { nc } = this.deps;
    const lane = majorLane(this.name, semver.major(this.version));
    this.micro = await nc.services.add({
      name: this.name,
      version: this.version,
      description: this.spec.description ?? "",
      metadata: { [MESH_METADATA_KEY]: "1" },
      queue: queueGroup(lane),
    });
    const id = this.micro.info().id;
    this.scope = { service: this.name, version: this.version, instance: id, logger: this.deps.logger.child({ service: this.name, version: this.version, instance: id }), calls: this.deps.calls };
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
    }).catch(() => undefined);
    await nc.flush(); // subscriptions are live at the server before anyone hears of us
    this.announce(INSTANCE_STARTED);
  }

  stop(): Promise<void> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  private async drain(): Promise<void> {
    const { nc } = this.deps;
    if (!nc.isClosed()) this.announce(INSTANCE_STOPPED);
    // Draining unsubscribes, then still hands over what already reached this client.
    await Promise.allSettled([this.micro?.stop(), nc.isClosed() ? undefined : this.exactSub?.drain()]);
    if (this.active > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    this.deps.onStopped?.(this);
  }

  private dispatchExact(lane: string, msg: Msg): void {
    const name = msg.subject.slice(lane.length + 1);
    const ep = this.endpoints.get(name);
    if (ep) this.dispatch(ep, msg);
    else replyError(this.scope.logger, msg, new MeshError("NOT_FOUND", `${this.name}@${this.version} has no endpoint ${JSON.stringify(name)}`));
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
    try {
      this.deps.nc.publish(`${EVENTS_ROOT}.${type}.${this.name}`, encodeBody(a));
    } catch (e) {
      this.scope.logger.warn({ err: e }, `could not announce ${type}`);
    }
  }
}
