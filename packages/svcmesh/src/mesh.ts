import { type ConnectionOptions, connect as natsConnect, type NatsConnection, nkeyAuthenticator } from "nats";
import { inboxPrefixFor } from "./broker/nats-config.js";
import { createSigner, type TokenSigner } from "./identity/index.js";
import { registrationProblem } from "./identity/registration.js";
import { createPolicyInterceptor } from "./interceptors/policy.js";
import { type PolicyInForce, PolicyState } from "./policy-state.js";
import { type PolicyWatcher, watchPolicy } from "./policy/store.js";
import { DEFAULT_POLICY_WAIT_MS, logRequiredPolicy, policyRequiredOf, REQUIRED_POLICY_WAIT_MS } from "./policy/required.js";
import { type PolicyServiceSettings, policyRateLimits, rateLimitFor, settingsFor as policySettingsFor } from "./policy/authorize.js";
import { DEFAULT_INBOX_PREFIX, Header } from "./subjects.js";
import type { Logger } from "pino";
import { bindClient, type MeshCalls, type MeshClient } from "./calls.js";
import { Caller, type CallOptions } from "./client/caller.js";
import { connectFailure } from "./connect-errors.js";
import { checkConnectOptions } from "./connect-options.js";
import { checkTls } from "./tls-check.js";
import { setBounded } from "./bounded.js";
import { MeshEvents, type MeshEventsOptions } from "./events/index.js";
import { type BreakerInterceptor, type BreakerState, createBreakerInterceptor } from "./interceptors/breaker.js";
import { createRateLimitInterceptor } from "./interceptors/rate-limit.js";
import { createRetryInterceptor } from "./interceptors/retry.js";
import { type CallSettings, CallSettingsInput, DEFAULT_CALL_SETTINGS, type RateLimit, mergeCallSettings } from "./settings.js";
import { RequestTransport } from "./client/transport.js";
import { isMeshError, MeshError } from "./errors.js";
import { defaultLogger } from "./logger.js";
import { Registry, type RegistryOptions } from "./registry.js";
import { type InstanceHandle, type ServeOptions, type ServiceHandle, startService } from "./server/service.js";
import type { ServerTelemetry } from "./server/context.js";
import { type AuditOptions, type AuditStats, AuditWriter, checkAuditOptions } from "./audit/writer.js";
import { createTraceInterceptor } from "./interceptors/trace.js";
import { MeshMetrics } from "./telemetry/metrics.js";
import { TraceBuffer, type TraceBufferOptions, type TraceBufferStats } from "./trace/buffer.js";

export const DEFAULT_SERVER = "nats://127.0.0.1:4222";

/** Settings for every call (timeout, retry, breaker); see settings.ts for the defaults. */
export type MeshDefaults = CallSettingsInput;

export interface ConnectOptions {
  /** NATS server URL(s); default `NATS_URL`, else nats://127.0.0.1:4222. */
  servers?: string | string[];
  /** This process's identity as a caller (shown to callees, used in logs). */
  name: string;
  /** A pino logger; by default one is made at `logLevel`. */
  logger?: Logger;
  /** Level of the default logger: default SVCMESH_LOG_LEVEL, else "info". */
  logLevel?: string;
  defaults?: MeshDefaults;
  /** Per target service, over `defaults`. */
  services?: Record<string, CallSettingsInput>;
  discovery?: Partial<RegistryOptions>;
  /**
   * The live policy: by default the mesh follows the one applied with `svcmesh apply`
   * (KV bucket svcmesh_policies), and connect() waits up to `waitMs` (default 2 s; 10 s
   * with `required`) for it so that nothing runs as an open mesh while a policy exists.
   * `required` (default SVCMESH_POLICY_REQUIRED: 1/true, 0/false) fails closed: connect()
   * fails UNAVAILABLE when no policy is in force by then (and UNAUTHENTICATED when this
   * process has a seed and the policy registers another key, or none, for its name; with
   * no seed it only warns: a process that only serves needs none), and while the
   * policy is gone later, calls served and made fail UNAVAILABLE instead of running open.
   */
  policy?: { watch?: boolean; waitMs?: number; required?: boolean };
  /** Mesh events (svc.events.*): coalescing window, stream creation. */
  events?: MeshEventsOptions;
  /**
   * This service's nkey seed (from `svcmesh identity new`). With it the connection
   * authenticates as that nkey user and uses the private inbox `_INBOX_<name>` that the
   * generated broker config (broker/nats-config.ts) grants it. Default: SVCMESH_SEED.
   */
  seed?: string;
  /**
   * TLS for the connection to NATS: the CA to trust, and this service's client
   * certificate and key where the server verifies clients (mTLS). Files or PEM text.
   * Default: the files named by SVCMESH_TLS_CA, SVCMESH_TLS_CERT and SVCMESH_TLS_KEY.
   */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; ca?: string; cert?: string; key?: string };
  /**
   * Tracing: W3C trace context on every call, OpenTelemetry spans (when an SDK is
   * registered) and one svc.trace record per call, of which ok ones are sampled at
   * `sampleRate` (default SVCMESH_TRACE_SAMPLE_RATE, else 0.01; errors are always
   * published). `false` turns all of it off (metrics stay, if a MeterProvider is registered).
   */
  trace?: false | TraceOptions;
  /** The audit trail (svc.audit.<service>, SVC_AUDIT stream); on by default. */
  audit?: AuditOptions;
  /** Passed through to nats.js `connect()`; overrides the mesh's choices. */
  nats?: Omit<ConnectionOptions, "servers" | "name">;
}

/** How long close() may take before the connection is closed without draining. */
const CLOSE_BUDGET_MS = 10_000;

/** Like Istio's default: one ok call in a hundred is published; every error is. */
const DEFAULT_SAMPLE_RATE = 0.01;

const DISCOVERY_DEFAULTS: RegistryOptions = { ttlMs: 10_000, jitterMs: 50, maxWaitMs: 1_000 };

export interface TraceOptions extends TraceBufferOptions {
  /** Share of ok calls published as svc.trace records, 0 to 1. */
  sampleRate?: number;
  /**
   * With an OpenTelemetry SDK: a hop whose incoming trace is not sampled (W3C flag)
   * records nothing without asking the SDK's sampler, as a parent-based sampler (the
   * SDK's default) would decide anyway (default true). false: ask the sampler at every hop.
   */
  followParentSampling?: boolean;
  /**
   * With an OpenTelemetry SDK: who decides whether a call that starts a trace (no parent
   * trace, no active span) is traced. "sdk" (default): the SDK's sampler, asked on every
   * such call. "mesh": the mesh, at `sampleRate`, as a service mesh's proxies do; the SDK
   * is asked only for the calls the mesh keeps, so register it with a sampler that
   * records those (its default, parent-based with every root recorded, does). Every
   * later hop follows the decision, and ok calls' records are kept exactly for the
   * traces kept.
   */
  rootSampling?: "sdk" | "mesh";
}

export async function connect(options: ConnectOptions): Promise<Mesh> {
  if (typeof options?.name !== "string" || options.name.length === 0) {
    throw new MeshError("BAD_REQUEST", "connect(): name is required (the caller's identity)");
  }
  checkConnectOptions(options);
  const policyRequired = policyRequiredOf(options.policy);
  sampleRateOf(options.trace); // a bad rate fails before connecting
  rootSamplingOf(options.trace);
  checkAuditOptions(options.audit);
  // Bad settings fail before anything connects.
  checkSettings(options.defaults, "defaults");
  for (const [name, layer] of Object.entries(options.services ?? {})) checkSettings(layer, `services.${name}`);
  const servers = options.servers ?? process.env.NATS_URL ?? DEFAULT_SERVER;
  const seed = seedOf(options);
  const tls = tlsOf(options);
  // Bad certificate or key files fail here, named, not as a bare "TLS" from the dial (nats.tls, when given, replaces them).
  if (tls && options.nats?.tls === undefined) checkTls(tls, options.tls === undefined);
  if (seed) createSigner(options.name, seed); // a bad seed, or a name no identity can have: BAD_REQUEST before connecting
  const natsOptions: ConnectionOptions = {
    name: options.name,
    servers,
    // nc.request() is not used on the hot path; async stack traces would only cost CPU.
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // A hung server keeps its socket open: only unanswered pings reveal it, here within
    // 3-4 s; and a dial to it hangs until the connect timeout (NATS-NOTES §1).
    timeout: 2_000,
    pingInterval: 1_000,
    maxPingOut: 3,
    ...(tls ? { tls } : {}),
    inboxPrefix: inboxPrefixOf(options),
    ...(seed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) } : {}),
    ...options.nats,
  };
  let nc: NatsConnection;
  try {
    nc = await natsConnect(natsOptions);
  } catch (e) {
    throw await connectFailure(e, servers, natsOptions);
  }
  try {
    const mesh = new Mesh(nc, options);
    await mesh.policyFollowed(options.policy?.waitMs ?? (policyRequired ? REQUIRED_POLICY_WAIT_MS : DEFAULT_POLICY_WAIT_MS));
    return mesh;
  } catch (e) {
    // An open connection would keep the process alive: nothing may leave it behind.
    await nc.close().catch(() => undefined);
    throw isMeshError(e) ? e : new MeshError("BAD_REQUEST", `connect(): ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

export class Mesh implements MeshCalls {
  readonly name: string;
  readonly logger: Logger;
  /** Mesh events: what breakers, retries and limits did; `consume()` for workflows. */
  readonly events: MeshEvents;
  /** The policy in force here; none means an open mesh (or, with policy.required, no calls). */
  readonly policy: PolicyState;
  private readonly registry: Registry;
  private readonly transport: RequestTransport;
  private readonly caller: Caller;
  private readonly defaultTimeoutMs: number;
  private readonly services = new Set<InstanceHandle>();
  private readonly traceBuffer: TraceBuffer | undefined;
  private readonly auditWriter: AuditWriter | undefined;
  private readonly telemetry: ServerTelemetry;
  private readonly settingsByService = new Map<string, CallSettings>();
  /** The policy's settings per target service, computed once per policy. */
  private readonly policyByService = new Map<string, { settings: PolicyServiceSettings; rateLimit: RateLimit | null | undefined }>();
  private readonly breaker: BreakerInterceptor;
  private readonly policyWatcher: PolicyWatcher | undefined;
  private readonly firstPolicy: Promise<void>;
  /** Settles when the server's permissions refuse this connection the policy bucket: waiting will not mend that. */
  private readonly policyRefused: Promise<void>;
  /** Signs this process's tokens when it has a seed; its public key is the one checked against the policy. */
  private readonly signer: TokenSigner | undefined;
  private closing: Promise<void> | undefined;
  /** Set when close() closes the transport: calls from then on fail UNAVAILABLE at once. */
  private callsRefused = false;

  constructor(readonly nc: NatsConnection, options: ConnectOptions) {
    this.name = options.name;
    this.logger = options.logger ?? defaultLogger(options.name, options.logLevel);
    this.policy = new PolicyState(policyRequiredOf(options.policy));
    this.signer = seedOf(options) ? createSigner(options.name, seedOf(options)!) : undefined;
    const defaults = mergeCallSettings(DEFAULT_CALL_SETTINGS, options.defaults);
    this.defaultTimeoutMs = defaults.timeoutMs;
    // Code defaults ← per-service code settings ← the policy in force (which wins).
    const settingsFor = (service: string): CallSettings => {
      const p = this.policy.inForce;
      // Nothing per service and no policy: the defaults, without a per-service lookup (a
      // cache miss per call for callers that spread their calls over many services).
      if (p === undefined && options.services === undefined) return defaults;
      let s = this.settingsByService.get(service);
      if (!s) {
        s = mergeCallSettings(defaults, options.services?.[service], p ? policySettingsFor(p.document, service).call : undefined);
        setBounded(this.settingsByService, service, s);
      }
      return s;
    };
    this.policy.onChange(() => {
      this.settingsByService.clear();
      this.policyByService.clear();
    });
    this.events = new MeshEvents(nc, this.logger, options.name, options.events);
    const tracing = options.trace !== false;
    this.traceBuffer = tracing ? new TraceBuffer(nc, this.logger, { caller: this.name, rate: sampleRateOf(options.trace) }, options.trace || {}) : undefined;
    this.auditWriter = options.audit?.enabled === false ? undefined : new AuditWriter(nc, this.logger, inboxPrefixOf(options), options.audit);
    this.auditWriter?.onStateChange((change) => this.events.emit(change));
    const metrics = MeshMetrics.create({
      breakers: () => this.breaker.states(),
      inFlight: () => [...this.services].flatMap((s) => [...s.endpointLoads()]),
      auditBacklog: () => this.auditWriter?.stats().backlog ?? 0,
    });
    const followParentSampling = (options.trace || {}).followParentSampling !== false;
    this.telemetry = { tracing, followParentSampling, metrics, audit: this.auditWriter };
    // Once per revision: a policy that does not register this seed's key for this name.
    let checkedRevision: number | undefined;
    this.policy.onChange((p) => {
      if (!p || p.revision === checkedRevision) return;
      checkedRevision = p.revision;
      const problem = registrationProblem(p.keys, p.revision, this.name, this.signer?.publicKey);
      if (problem) this.logger[problem.level]({ revision: p.revision, name: this.name }, problem.message);
    });
    if (this.policy.required) logRequiredPolicy(this.policy, this.logger, () => this.policyWatcher?.problem);
    let heard!: () => void;
    this.firstPolicy = new Promise<void>((resolve) => (heard = resolve));
    let refused!: () => void;
    this.policyRefused = new Promise<void>((resolve) => (refused = resolve));
    if (options.policy?.watch === false) heard();
    else {
      this.policyWatcher = watchPolicy(nc, (p) => {
        this.policy.set(p?.policy, p?.revision);
        heard();
      }, this.logger, { onRefused: refused });
    }
    this.registry = new Registry(nc, { ...DISCOVERY_DEFAULTS, ...options.discovery }, this.logger);
    this.registry.start();
    this.transport = new RequestTransport(nc, {
      inboxPrefix: inboxPrefixOf(options),
      callerName: this.name,
      onFailure: (code, subject) => {
        const [, service = "", , endpoint = ""] = subject.split("."); // svc.<name>.<lane>.<endpoint>
        // Nobody listened: ask discovery again next time.
        if (code === "NO_RESPONDERS") this.registry.invalidate(service);
        this.events.count(code === "TIMEOUT" ? "timeout" : "no_responders", this.name, service, endpoint);
      },
    });
    const signer = this.signer;
    // The extra header lines per target, rebuilt only when its token is re-signed or the
    // policy changes: the hot path reuses one string.
    const linesByService = new Map<string, { token: string | undefined; policy: PolicyInForce | undefined; line: string }>();
    const headerLines = (service: string): string => {
      const policy = this.policy.inForce;
      // No seed and no policy: no lines, and no per-service lookup (a cache miss per call
      // for callers that spread their calls over many services).
      if (signer === undefined && policy === undefined) return "";
      const token = signer?.tokenFor(service);
      const cached = linesByService.get(service);
      if (cached && cached.token === token && cached.policy === policy) return cached.line;
      const line = (token ? `${Header.token}: ${token}\r\n` : "") + (policy?.headerLine ?? "");
      setBounded(linesByService, service, { token, policy, line });
      return line;
    };
    const policyCheck = createPolicyInterceptor(this.policy);
    const rateLimit = createRateLimitInterceptor();
    // Breaker keys are `<service>.v<major>` (or `<service>` before discovery knows the major).
    this.breaker = createBreakerInterceptor({ settingsFor: (key) => settingsFor(key.split(".")[0]!).breaker, logger: this.logger });
    this.breaker.onStateChange((t) => {
      this.events.emit({ type: CIRCUIT_EVENT[t.to], caller: this.name, target: t.key, stats: t.stats });
    });
    rateLimit.onLimited((ctx) => {
      metrics?.rateLimited("client", ctx.target.service, this.name);
      this.events.count("rate_limited", this.name, ctx.target.service, ctx.endpoint);
    });
    const trace = createTraceInterceptor({
      callerName: this.name,
      tracing,
      followParentSampling,
      meshRootSampling: rootSamplingOf(options.trace) === "mesh",
      sampleRate: sampleRateOf(options.trace),
      buffer: this.traceBuffer,
      metrics,
    });
    const retry = createRetryInterceptor({ settingsFor: (ctx) => this.caller.settings(ctx).retry });
    retry.onExhausted((e) => this.events.retryExhausted(this.name, e.ctx.key, e.ctx.endpoint, e.attempts, e.code));
    this.caller = new Caller(this.registry, this.transport, {
      callerName: this.name,
      settingsFor,
      // The order is pipeline.ts's: trace → policy → rate limit → breaker → retry → transport.
      observe: tracing || metrics ? trace : undefined,
      interceptors: [
        ...(tracing || metrics ? [trace] : []),
        policyCheck,
        rateLimit.interceptor,
        this.breaker.interceptor,
        retry.interceptor,
      ],
      headerLines,
      trafficFor: (service) => this.policy.inForce?.document.services?.[service]?.traffic,
      policyEndpoint: (service, endpoint) => this.policyFor(service)?.settings.endpoints[endpoint],
      policyRateLimit: (service) => this.policyFor(service)?.rateLimit,
    });
    // Weights and settings come from the policy: a new one re-resolves routes and settings.
    this.policy.onChange(() => {
      this.caller.forgetRoutes();
      this.breaker.refresh(); // breakers whose thresholds changed start afresh; others keep their state
    });
  }

  private policyFor(service: string): { settings: PolicyServiceSettings; rateLimit: RateLimit | null | undefined } | undefined {
    const p = this.policy.inForce;
    if (!p) return undefined;
    let entry = this.policyByService.get(service);
    if (!entry) {
      const settings = policySettingsFor(p.document, service);
      // As the callee decides: limits in the policy replace the ones in code whole, so a
      // caller they do not name is not limited (null), whatever discovery still publishes from code.
      const rateLimit = policyRateLimits(settings) ? (rateLimitFor(p.document, service, this.name) ?? null) : undefined;
      entry = { settings, rateLimit };
      setBounded(this.policyByService, service, entry);
    }
    return entry;
  }

  /**
   * Resolves once the policy in force (or its absence) is known, or after `waitMs`.
   * With policy.required it waits for a policy in force, and rejects UNAVAILABLE if
   * none is by then, or UNAUTHENTICATED if it does not register this seed's key for this name.
   */
  async policyFollowed(waitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let stopListening: (() => void) | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
    const known = !this.policy.required || this.policy.inForce
      ? this.firstPolicy
      : new Promise<void>((resolve) => (stopListening = this.policy.onChange((p) => p && resolve())));
    // Required, a refusal by the server's permissions ends the wait: it lasts until the
    // broker config changes (or, often, the process has another service's seed).
    await Promise.race(this.policy.required ? [known, late, this.policyRefused] : [known, late]);
    clearTimeout(timer);
    stopListening?.();
    if (!this.policy.required) return;
    const p = this.policy.inForce;
    if (!p && this.policyWatcher?.refused) {
      throw new MeshError("FORBIDDEN", `connect(): policy.required is set and ${this.policyWatcher.problem ?? "the NATS server's permissions do not let this connection read the policy bucket"}; does this process run with its own seed (name ${JSON.stringify(this.name)})?`);
    }
    if (!p) {
      const why = this.policyWatcher?.problem ?? "none arrived";
      throw new MeshError("UNAVAILABLE", `connect(): policy.required is set and no policy is in force after ${waitMs} ms: ${why}`);
    }
    const problem = registrationProblem(p.keys, p.revision, this.name, this.signer?.publicKey);
    if (problem?.level === "error") throw new MeshError("UNAUTHENTICATED", `connect(): ${problem.message}; policy.required is set, so this process does not start`);
  }

  call<T = unknown>(target: string, endpoint: string, payload?: unknown, opts?: CallOptions): Promise<T> {
    // Closed: say so, not NO_RESPONDERS from a discovery that can no longer ask. (While
    // close() drains, handlers still running may call on: only a closed transport refuses.)
    if (this.callsRefused) return Promise.reject(new MeshError("UNAVAILABLE", `call to ${String(target)}.${String(endpoint)}: the mesh connection is closed`));
    return this.caller.call(target, endpoint, payload, opts) as Promise<T>;
  }

  client(target: string): MeshClient {
    this.caller.parse(target); // a bad target fails here, not on the first call
    return bindClient(this, target);
  }

  async serve<I extends Record<string, unknown>, O extends Record<string, unknown>>(spec: ServeOptions<I, O>): Promise<ServiceHandle> {
    if (this.closing) throw new MeshError("UNAVAILABLE", "serve(): the mesh connection is closing");
    const handle = await startService(
      {
        nc: this.nc,
        registry: this.registry,
        policy: this.policy,
        logger: this.logger,
        calls: this,
        defaultTimeoutMs: this.defaultTimeoutMs,
        onStopped: (h) => this.services.delete(h as InstanceHandle),
        onRejected: (e) => {
          if (e.type === "rate_limited") this.telemetry.metrics?.rateLimited("server", e.service, e.caller);
          this.events.count(e.type, e.caller, e.service, e.endpoint);
        },
        telemetry: this.telemetry,
        announce: (subject, body) => this.events.publishEncoded(subject, body),
      },
      spec as ServeOptions,
    );
    if (this.closing) {
      // close() began while it started, and stops only the services it knew of.
      await handle.stop().catch(() => undefined);
      throw new MeshError("UNAVAILABLE", "serve(): the mesh connection closed while the service was starting");
    }
    this.services.add(handle);
    return handle;
  }

  /** Call attempts sent and still waiting for their reply or their deadline. */
  get callsInFlight(): number {
    return this.transport.inFlight;
  }

  /** Audit records this process wrote: stored, duplicates, backlog, dropped, lost. */
  auditStats(): AuditStats | undefined {
    return this.auditWriter?.stats();
  }

  /** Trace records published, buffered, dropped. */
  traceStats(): TraceBufferStats | undefined {
    return this.traceBuffer?.stats();
  }

  /** Publishes buffered trace records now (they go out every flushMs anyway). */
  flushTraces(): void {
    this.traceBuffer?.flush();
  }

  /** Stops every service (draining in-flight requests), then drains the connection. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Closing during an outage must not hang on draining a connection that is not there.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), CLOSE_BUDGET_MS)));
      const outcome = await Promise.race([this.closeGracefully().then(() => "done" as const), late]);
      clearTimeout(timer);
      if (outcome === "late") {
        this.logger.warn({ budgetMs: CLOSE_BUDGET_MS }, "mesh close did not finish in time (is NATS reachable?); closing the connection");
        this.callsRefused = true;
        this.transport.close("mesh connection closed");
        await this.nc.close().catch(() => undefined);
      }
    })();
    return this.closing;
  }

  private async closeGracefully(): Promise<void> {
    {
      await Promise.allSettled([...this.services].map((s) => s.stop()));
      this.traceBuffer?.close();
      await this.auditWriter?.close(); // stores what the stopped services' handlers left
      this.registry.close();
      this.breaker.close();
      await this.policyWatcher?.stop();
      await this.events.close(); // publishes pending coalesced windows while the connection is up
      this.callsRefused = true;
      this.transport.close("mesh connection closed");
      if (!this.nc.isClosed()) await this.nc.drain().catch(() => undefined);
      // While disconnected, nats.js's drain() resolves without closing (its flush fails
      // and is swallowed): the reconnect timers would keep the process alive for ever.
      if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
    }
  }
}

function sampleRateOf(trace: ConnectOptions["trace"]): number {
  const fromEnv = process.env.SVCMESH_TRACE_SAMPLE_RATE;
  const rate = (trace || undefined)?.sampleRate ?? (fromEnv !== undefined && fromEnv !== "" ? Number(fromEnv) : DEFAULT_SAMPLE_RATE);
  if (typeof rate !== "number" || !(rate >= 0 && rate <= 1)) {
    throw new MeshError("BAD_REQUEST", `connect(): trace.sampleRate must be a number from 0 to 1 (got ${typeof rate === "string" ? JSON.stringify(rate) : String(rate)}${trace && trace.sampleRate !== undefined ? "" : " from SVCMESH_TRACE_SAMPLE_RATE"})`);
  }
  return rate;
}

function rootSamplingOf(trace: ConnectOptions["trace"]): "sdk" | "mesh" {
  const value = (trace || undefined)?.rootSampling ?? "sdk";
  if (value !== "sdk" && value !== "mesh") {
    throw new MeshError("BAD_REQUEST", `connect(): trace.rootSampling must be "sdk" or "mesh" (got ${JSON.stringify(value)})`);
  }
  return value;
}

/**
 * TLS settings: connect's own, else files named by SVCMESH_TLS_CA, SVCMESH_TLS_CERT and
 * SVCMESH_TLS_KEY, so a process configured from its environment (the CLI, a container)
 * can trust a private CA and present a client certificate (mTLS) without code.
 */
function tlsOf(options: ConnectOptions): ConnectOptions["tls"] {
  if (options.tls) return options.tls;
  const { SVCMESH_TLS_CA: caFile, SVCMESH_TLS_CERT: certFile, SVCMESH_TLS_KEY: keyFile } = process.env;
  if (!caFile && !certFile && !keyFile) return undefined;
  return { ...(caFile ? { caFile } : {}), ...(certFile ? { certFile } : {}), ...(keyFile ? { keyFile } : {}) };
}

function seedOf(options: ConnectOptions): string | undefined {
  return options.seed ?? process.env.SVCMESH_SEED;
}

/** A service with an identity replies to its private inbox, the one its broker permissions allow. */
function inboxPrefixOf(options: ConnectOptions): string {
  return options.nats?.inboxPrefix ?? (seedOf(options) ? inboxPrefixFor(options.name) : DEFAULT_INBOX_PREFIX);
}

const CIRCUIT_EVENT = { open: "circuit_open", half_open: "circuit_half_open", closed: "circuit_close" } as const satisfies Record<BreakerState, string>;

/** Settings from code are checked like the policy document will be: whole, with clear errors. */
function checkSettings(layer: unknown, where: string): CallSettingsInput | undefined {
  if (layer === undefined) return undefined;
  const parsed = CallSettingsInput.strict().safeParse(layer);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${[where, ...i.path].join(".")}: ${i.message}`).join("; ");
    throw new MeshError("BAD_REQUEST", `connect(): invalid settings: ${issues}`, { details: { issues: parsed.error.issues } });
  }
  return parsed.data;
}
