// Discovery: which instances of a service are running, from the NATS services
// protocol ($SRV.INFO), kept fresh by the instances' own start/stop announcements.
import { type NatsConnection, RequestStrategy, type ServiceInfo, type Subscription } from "nats";
import type { Logger } from "pino";
import { z } from "zod";
import { MeshError, isMeshError } from "./errors.js";
import { RepeatedLog } from "./logger.js";
import { setBounded } from "./bounded.js";
import { RateLimit } from "./settings.js";
import type { RunningInstance } from "./target.js";
import { decodeBody } from "./wire.js";
import { EVENTS_ROOT, SUBJECT_ROOT } from "./subjects.js";

export const MESH_METADATA_KEY = "svcmesh";
export const INSTANCE_STARTED = "instance_started";
export const INSTANCE_STOPPED = "instance_stopped";

export interface RegistryOptions {
  /** How long a view is trusted before it is refreshed in the background. */
  ttlMs: number;
  /** How long a discovery query waits after the last answer for more answers. */
  jitterMs: number;
  /** Upper bound on one discovery query. */
  maxWaitMs: number;
}

interface ServiceView {
  instances: Map<string, RunningInstance>;
  fetchedAt: number;
  /** Bumped on every change, so cached routes know when to resolve again. */
  generation: number;
  refreshing: Promise<void> | undefined;
  /** Why the last query failed, when that says more than "nobody runs it" (FORBIDDEN). */
  failure: MeshError | undefined;
}

/** The announcement every instance publishes on start and stop. */
export interface InstanceAnnouncement extends RunningInstance {
  service: string;
}

/** Metadata keys instances publish in $SRV.INFO. */
export const Metadata = {
  /** Endpoint: "true" when a retry after a timeout is safe. */
  idempotent: "idempotent",
  /** Service: JSON of the per-caller rate limits. */
  rateLimits: "rate_limits",
} as const;

export function instanceFromInfo(info: ServiceInfo): RunningInstance | undefined {
  if (info.metadata?.[MESH_METADATA_KEY] === undefined) return undefined;
  const endpoints = (info.endpoints ?? []).filter((e) => e.subject.startsWith(`${SUBJECT_ROOT}.`));
  return {
    id: info.id,
    version: info.version,
    endpoints: endpoints.map((e) => e.name),
    idempotent: endpoints.filter((e) => e.metadata?.[Metadata.idempotent] === "true").map((e) => e.name),
    rateLimits: parseRateLimits(info.metadata[Metadata.rateLimits]),
  };
}

function parseRateLimits(text: string | undefined): Record<string, RateLimit> | undefined {
  if (!text) return undefined;
  try {
    const parsed = z.record(z.string(), RateLimit).safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export class Registry {
  private readonly views = new Map<string, ServiceView>();
  private readonly subs: Subscription[] = [];
  /** A refused or failing query is retried often: its warning, once a minute. */
  private readonly failureLog = new RepeatedLog();
  private generationSeq = 0;
  /**
   * Instances announced stopped, oldest first. An id never comes back, but what was said
   * about it can arrive late: a discovery query answered just before the stop, or an
   * instance_started re-sent while JetStream does not acknowledge it. Neither may bring it back.
   */
  private readonly stopped = new Set<string>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: RegistryOptions,
    private readonly logger: Logger,
  ) {}

  /** Subscribes to announcements; call before the first lookup so no start is missed. */
  start(): void {
    for (const type of [INSTANCE_STARTED, INSTANCE_STOPPED]) {
      this.subs.push(this.nc.subscribe(`${EVENTS_ROOT}.${type}.*`, {
        callback: (err, msg) => {
          if (err) return;
          try {
            this.onAnnouncement(type, decodeBody(msg.data) as InstanceAnnouncement);
          } catch (e) {
            this.logger.debug({ err: e, subject: msg.subject }, "ignoring malformed announcement");
          }
        },
      }));
    }
  }

  close(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
  }

  /** The view if it is usable right now (possibly stale, in which case a refresh starts). */
  peek(service: string, now: number): { generation: number } | undefined {
    const view = this.views.get(service);
    if (!view) return undefined;
    if (now - view.fetchedAt > this.ttlFor(view)) {
      if (view.instances.size === 0) return undefined; // an empty view is not worth trusting when stale
      this.refresh(service, view);
    }
    return view;
  }

  /** Running instances of a service, querying the mesh when nothing usable is known. */
  async running(service: string): Promise<{ instances: RunningInstance[]; generation: number }> {
    let view = this.views.get(service);
    if (!view || (view.instances.size === 0 && Date.now() - view.fetchedAt > this.ttlFor(view))) {
      view = view ?? this.emptyView(service);
      await this.refresh(service, view);
      if (view.instances.size === 0 && view.failure) throw view.failure;
    }
    return { instances: [...view.instances.values()], generation: view.generation };
  }

  /** Forget what is known, e.g. after a call found nobody listening. */
  invalidate(service: string): void {
    const view = this.views.get(service);
    if (view) view.fetchedAt = 0;
  }

  private ttlFor(view: ServiceView): number {
    // A service nobody runs is asked about again soon; announcements usually beat this.
    return view.instances.size === 0 ? Math.min(250, this.options.ttlMs) : this.options.ttlMs;
  }

  private emptyView(service: string): ServiceView {
    const view: ServiceView = { instances: new Map(), fetchedAt: 0, generation: ++this.generationSeq, refreshing: undefined, failure: undefined };
    setBounded(this.views, service, view); // a forgotten view is queried again when next asked
    return view;
  }

  private refresh(service: string, view: ServiceView): Promise<void> {
    if (view.refreshing) return view.refreshing;
    view.refreshing = this.query(service)
      .then((found) => {
        // Answers collected before a stop announcement arrived must not undo it.
        for (const id of found.keys()) if (this.stopped.has(id)) found.delete(id);
        view.instances = found;
        view.fetchedAt = Date.now();
        view.generation = ++this.generationSeq;
        view.failure = undefined;
      })
      .catch((e: unknown) => {
        if (isMeshError(e) && e.code === "FORBIDDEN") view.failure = e;
        const logged = this.failureLog.admit(`${service}: ${(e as Error)?.message}`);
        if (logged) this.logger.warn({ err: e, service, heldBack: logged.held }, "discovery query failed; keeping the last view");
      })
      .finally(() => {
        view.refreshing = undefined;
      });
    return view.refreshing;
  }

  private async query(service: string): Promise<Map<string, RunningInstance>> {
    const found = new Map<string, RunningInstance>();
    const client = this.nc.services.client({
      strategy: RequestStrategy.JitterTimer,
      maxWait: this.options.maxWaitMs,
      jitter: this.options.jitterMs,
    });
    try {
      for await (const info of await client.info(service)) {
        const instance = instanceFromInfo(info);
        if (instance) found.set(instance.id, instance);
      }
    } catch (e) {
      // No responders ends the query with an error: that simply means nobody runs it.
      if (isNoResponders(e)) return found;
      // The broker's permissions (broker/nats-config.ts) may not let us look it up at all.
      if ((e as { code?: unknown }).code === "PERMISSIONS_VIOLATION") {
        throw new MeshError("FORBIDDEN", `the NATS server refused discovery of ${service}: ${(e as Error).message}`, {
          details: { subject: `$SRV.INFO.${service}` },
          cause: e,
        });
      }
      throw e;
    }
    return found;
  }

  private rememberStopped(id: string): void {
    if (this.stopped.size >= MAX_STOPPED) this.stopped.delete(this.stopped.keys().next().value!);
    this.stopped.add(id);
  }

  private onAnnouncement(type: string, a: InstanceAnnouncement): void {
    if (typeof a?.service !== "string" || typeof a.id !== "string") return;
    if (type === INSTANCE_STOPPED) this.rememberStopped(a.id);
    else if (this.stopped.has(a.id)) return;
    const view = this.views.get(a.service);
    if (!view) return; // never asked about: nothing to keep fresh
    if (type === INSTANCE_STARTED) {
      if (typeof a.version !== "string" || !Array.isArray(a.endpoints)) return;
      view.instances.set(a.id, { id: a.id, version: a.version, endpoints: a.endpoints.filter((e) => typeof e === "string") });
      // The announcement names the endpoints but not their metadata (idempotency, limits):
      // route at once, and let the next lookup refresh from $SRV.INFO in the background.
      view.fetchedAt = 0;
    } else if (!view.instances.delete(a.id)) {
      return;
    } else {
      view.fetchedAt = Date.now();
    }
    view.generation = ++this.generationSeq;
  }
}

/** Stopped instance ids remembered at most (the oldest is forgotten first). */
const MAX_STOPPED = 4096;

function isNoResponders(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === "503";
}
