// OpenTelemetry metrics through @opentelemetry/api. The API has no proxy for meters:
// the meter is taken when the mesh connects, so an SDK must be registered before
// connect(). With none, the mesh records nothing (no attribute objects, no calls).
// Attribute sets are made once per (service, endpoint, status) and reused.
import { type Attributes, type Counter, type Histogram, type Meter, metrics, createNoopMeter, ValueType } from "@opentelemetry/api";
import { INSTRUMENTATION_NAME } from "./tracer.js";

const NOOP_METER_CLASS = createNoopMeter().constructor;

/** Breaker states as gauge values. */
export const BREAKER_STATE_VALUE = { closed: 0, half_open: 1, open: 2 } as const;

export interface MetricSources {
  /** Breaker key (`payments.v2`) → state, for `svcmesh.breaker.state`. */
  breakers(): Iterable<readonly [string, keyof typeof BREAKER_STATE_VALUE]>;
  /** (service, endpoint, requests in flight, of those overdue) of every serving instance here. */
  inFlight(): Iterable<readonly [string, string, number, number]>;
  /** Audit records waiting to be stored (queued or awaiting their ack). */
  auditBacklog(): number;
}

/** Three-level cache of attribute sets: no string keys built per call. */
class AttributeCache {
  private readonly root = new Map<string, Map<string, Map<string, Attributes>>>();
  constructor(private readonly make: (a: string, b: string, c: string) => Attributes) {}

  get(a: string, b: string, c: string): Attributes {
    let l1 = this.root.get(a);
    if (!l1) this.root.set(a, (l1 = new Map()));
    let l2 = l1.get(b);
    if (!l2) l1.set(b, (l2 = new Map()));
    let attrs = l2.get(c);
    if (!attrs) l2.set(c, (attrs = this.make(a, b, c)));
    return attrs;
  }
}

export class MeshMetrics {
  private readonly clientCalls: Counter;
  private readonly clientErrors: Counter;
  private readonly clientRetries: Counter;
  private readonly clientDuration: Histogram;
  private readonly serverRequests: Counter;
  private readonly serverDuration: Histogram;
  private readonly rateLimitedCount: Counter;
  private readonly byStatus = new AttributeCache((service, method, status) => ({ "rpc.system": "nats", "rpc.service": service, "rpc.method": method, "svcmesh.status": status }));
  private readonly byError = new AttributeCache((service, method, code) => ({ "rpc.system": "nats", "rpc.service": service, "rpc.method": method, "error.type": code }));
  private readonly byMethod = new AttributeCache((service, method) => ({ "rpc.system": "nats", "rpc.service": service, "rpc.method": method }));
  private readonly byLimit = new AttributeCache((side, service, caller) => ({ "svcmesh.side": side, "rpc.service": service, "svcmesh.caller": caller }));

  /** Undefined when no MeterProvider is registered: then nothing is recorded at all. */
  static create(sources: MetricSources): MeshMetrics | undefined {
    const meter = metrics.getMeter(INSTRUMENTATION_NAME);
    if (meter instanceof NOOP_METER_CLASS || meter.constructor?.name === "NoopMeter") return undefined;
    return new MeshMetrics(meter, sources);
  }

  private constructor(meter: Meter, sources: MetricSources) {
    this.clientCalls = meter.createCounter("svcmesh.client.calls", { description: "calls made, by target service, endpoint and status (ok or error code)" });
    this.clientErrors = meter.createCounter("svcmesh.client.errors", { description: "failed calls, by error code (error.type)" });
    this.clientRetries = meter.createCounter("svcmesh.client.retries", { description: "attempts beyond the first" });
    this.clientDuration = meter.createHistogram("rpc.client.duration", { unit: "ms", description: "duration of whole calls as the caller saw them, retries included" });
    this.serverRequests = meter.createCounter("svcmesh.server.requests", { description: "requests handled, by service, endpoint and status" });
    this.serverDuration = meter.createHistogram("rpc.server.duration", { unit: "ms", description: "time from receiving a request to replying" });
    this.rateLimitedCount = meter.createCounter("svcmesh.rate_limited", { description: "calls refused by a rate limit, by side (client mirror or server), service and caller" });
    meter.createObservableGauge("svcmesh.breaker.state", { description: "circuit breaker state per target: 0 closed, 1 half open, 2 open", valueType: ValueType.INT })
      .addCallback((r) => {
        for (const [key, state] of sources.breakers()) r.observe(BREAKER_STATE_VALUE[state], { "svcmesh.target": key });
      });
    meter.createObservableGauge("svcmesh.server.in_flight", { description: "requests being handled now, per endpoint", valueType: ValueType.INT })
      .addCallback((r) => {
        for (const [service, method, n] of sources.inFlight()) r.observe(n, { "rpc.service": service, "rpc.method": method });
      });
    meter.createObservableGauge("svcmesh.server.overdue", { description: "requests whose handler still runs well past their deadline (each holds its bulkhead slot), per endpoint", valueType: ValueType.INT })
      .addCallback((r) => {
        for (const [service, method, , n] of sources.inFlight()) r.observe(n, { "rpc.service": service, "rpc.method": method });
      });
    meter.createObservableGauge("svcmesh.audit.backlog", { description: "audit records not yet acknowledged by JetStream", valueType: ValueType.INT })
      .addCallback((r) => r.observe(sources.auditBacklog()));
  }

  /** One finished call on the caller's side. */
  call(service: string, endpoint: string, status: string, ms: number, attempts: number): void {
    const attrs = this.byStatus.get(service, endpoint, status);
    this.clientCalls.add(1, attrs);
    this.clientDuration.record(ms, attrs);
    if (status !== "ok") this.clientErrors.add(1, this.byError.get(service, endpoint, status));
    if (attempts > 1) this.clientRetries.add(attempts - 1, this.byMethod.get(service, endpoint, ""));
  }

  /** One request answered by a serving instance here. */
  request(service: string, endpoint: string, status: string, ms: number): void {
    const attrs = this.byStatus.get(service, endpoint, status);
    this.serverRequests.add(1, attrs);
    this.serverDuration.record(ms, attrs);
  }

  rateLimited(side: "client" | "server", service: string, caller: string): void {
    this.rateLimitedCount.add(1, this.byLimit.get(side, service, caller));
  }
}
