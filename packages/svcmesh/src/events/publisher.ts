// Publishing mesh events on `svc.events.<type>.<service>` (msgpack bodies).
//
// - emit(): state changes (breaker transitions, instance start/stop), published as
//   given; whoever calls it guarantees once per transition.
// - count(): per-call events, coalesced: one event per (type, caller, target,
//   endpoint) per window, carrying how many calls it stands for. A count is a few Map
//   lookups and an increment; windows are kept and reused, so a failure storm
//   allocates nothing; one unref'd timer flushes every window.
import type { Logger } from "pino";
import { EVENTS_ROOT } from "../subjects.js";
import { encodeBody } from "../wire.js";
import { COALESCED_TYPES, type CoalescedEventType, type EmitInput, eventSchemas, type MeshEvent, serviceOfTarget, subjectToken } from "./schemas.js";

const COALESCED: ReadonlySet<string> = new Set(COALESCED_TYPES);

export interface PublisherOptions {
  /** Length of a coalescing window (default 1000 ms). */
  windowMs?: number;
  /** Distinct (type, caller, target, endpoint) keys kept at once; counts for more are dropped (default 10,000). */
  maxWindows?: number;
  /** A key with no counts for this many windows is forgotten (default 60). */
  idleWindows?: number;
}

/** Where encoded events go (the EventSender). */
export type EventSink = (subject: string, body: Uint8Array) => void;

export interface PublisherStats {
  /** Keys with a window open. */
  windows: number;
  /** Counts dropped because maxWindows keys were open. */
  overflow: number;
  /** Events handed to the sink. */
  published: number;
  /** emit() calls refused (invalid events, or after close). */
  rejected: number;
}

class Window {
  count = 0;
  start = 0;
  idle = 0;
  attempts = 0;
  lastCode = "";
  readonly subject: string;
  readonly service: string;

  constructor(
    readonly type: CoalescedEventType,
    readonly caller: string,
    readonly target: string,
    readonly endpoint: string,
  ) {
    this.service = serviceOfTarget(target);
    this.subject = `${EVENTS_ROOT}.${type}.${this.service}`;
  }
}

type Level<T> = Map<string, T>;
type Windows = Map<CoalescedEventType, Level<Level<Level<Window>>>>;

export class EventPublisher {
  private readonly windows: Windows = new Map();
  private readonly open: Window[] = [];
  private timer: NodeJS.Timeout | undefined;
  private overflow = 0;
  private overflowSinceLog = 0;
  private published = 0;
  private rejected = 0;
  private closed = false;
  private readonly windowMs: number;
  private readonly maxWindows: number;
  private readonly idleWindows: number;

  constructor(
    private readonly sink: EventSink,
    private readonly logger: Logger,
    private readonly source: string,
    options: PublisherOptions = {},
  ) {
    this.windowMs = options.windowMs ?? 1000;
    this.maxWindows = options.maxWindows ?? 10_000;
    this.idleWindows = options.idleWindows ?? 60;
  }

  /**
   * Publishes one event now. `at` and `source` default to now and this connection's
   * name; `service` to the target's service. An invalid event is logged, not thrown.
   */
  emit(input: EmitInput): void {
    if (this.closed) {
      this.rejected++;
      return;
    }
    if (typeof input !== "object" || input === null) {
      this.rejected++;
      this.logger.error({ input: String(input) }, "refusing to publish a mesh event that is not an object");
      return;
    }
    const raw = input as Partial<MeshEvent> & { type: string; target?: string };
    const service = raw.service ?? (typeof raw.target === "string" ? serviceOfTarget(raw.target) : undefined);
    const event = { ...input, service, at: raw.at ?? Date.now(), source: raw.source ?? this.source };
    const schema = (eventSchemas as Record<string, { safeParse(v: unknown): { success: boolean; data?: unknown; error?: unknown } }>)[raw.type];
    const checked = schema?.safeParse(event);
    if (!checked?.success) {
      this.rejected++;
      this.logger.error({ type: raw.type, issues: checked?.error }, "refusing to publish an invalid mesh event");
      return;
    }
    // The parsed copy: only the documented fields travel.
    this.publish(`${EVENTS_ROOT}.${raw.type}.${subjectToken(service!)}`, checked.data as MeshEvent);
  }

  /**
   * Counts `n` calls (default 1) into the window of (type, caller, target, endpoint).
   * Cheap enough for every failing call: no allocation once the key has a window.
   */
  count(type: CoalescedEventType, caller: string, target: string, endpoint: string, n = 1): void {
    const w = this.window(type, caller, target, endpoint);
    if (w === undefined) return;
    if (w.count === 0) w.start = Date.now();
    w.count += n;
  }

  /** Counts a call that failed after its last retry, remembering its attempts and code. */
  retryExhausted(caller: string, target: string, endpoint: string, attempts: number, lastCode: string): void {
    const w = this.window("retry_exhausted", caller, target, endpoint);
    if (w === undefined) return;
    if (w.count === 0) w.start = Date.now();
    w.count++;
    w.attempts = attempts;
    w.lastCode = lastCode;
  }

  /** Publishes every window with counts now (the timer does this every windowMs). */
  flush(now = Date.now()): void {
    const open = this.open;
    for (let i = 0; i < open.length; ) {
      const w = open[i]!;
      if (w.count > 0) {
        this.publish(w.subject, this.windowEvent(w, now));
        w.count = 0;
        w.idle = 0;
        i++;
      } else if (++w.idle >= this.idleWindows || this.closed) {
        this.forget(w);
        open[i] = open[open.length - 1]!;
        open.pop();
      } else {
        i++;
      }
    }
    if (this.overflowSinceLog > 0) {
      this.logger.warn({ dropped: this.overflowSinceLog, maxWindows: this.maxWindows }, "too many distinct mesh event keys; counts dropped");
      this.overflowSinceLog = 0;
    }
    if (open.length === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Flushes what is pending; later emits and counts are ignored. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
    this.closed = true;
    this.flush(); // forgets every window
  }

  stats(): PublisherStats {
    return { windows: this.open.length, overflow: this.overflow, published: this.published, rejected: this.rejected };
  }

  private window(type: CoalescedEventType, caller: string, target: string, endpoint: string): Window | undefined {
    const w = this.windows.get(type)?.get(caller)?.get(target)?.get(endpoint);
    if (w !== undefined) return w;
    if (this.closed) return undefined;
    if (!COALESCED.has(type) || typeof caller !== "string" || typeof target !== "string" || typeof endpoint !== "string") {
      this.rejected++; // a misuse of the public count(): never a throw on a failing call's path
      return undefined;
    }
    if (this.open.length >= this.maxWindows) {
      this.overflow++;
      this.overflowSinceLog++;
      return undefined;
    }
    return this.openWindow(type, caller, target, endpoint);
  }

  private openWindow(type: CoalescedEventType, caller: string, target: string, endpoint: string): Window {
    const w = new Window(type, caller, target, endpoint);
    let byCaller = this.windows.get(type);
    if (!byCaller) this.windows.set(type, (byCaller = new Map()));
    let byTarget = byCaller.get(caller);
    if (!byTarget) byCaller.set(caller, (byTarget = new Map()));
    let byEndpoint = byTarget.get(target);
    if (!byEndpoint) byTarget.set(target, (byEndpoint = new Map()));
    byEndpoint.set(endpoint, w);
    this.open.push(w);
    this.timer ??= setInterval(() => this.flush(), this.windowMs).unref();
    return w;
  }

  private forget(w: Window): void {
    const byCaller = this.windows.get(w.type);
    const byTarget = byCaller?.get(w.caller);
    const byEndpoint = byTarget?.get(w.target);
    if (!byCaller || !byTarget || !byEndpoint) return;
    byEndpoint.delete(w.endpoint);
    if (byEndpoint.size > 0) return;
    byTarget.delete(w.target);
    if (byTarget.size > 0) return;
    byCaller.delete(w.caller);
    if (byCaller.size === 0) this.windows.delete(w.type);
  }

  private windowEvent(w: Window, now: number): MeshEvent {
    const base = {
      service: w.service,
      at: now,
      source: this.source,
      caller: w.caller,
      target: w.target,
      endpoint: w.endpoint,
      count: w.count,
      windowStart: w.start,
      windowEnd: Math.max(now, w.start),
    };
    return w.type === "retry_exhausted"
      ? { type: w.type, ...base, attempts: Math.max(1, w.attempts), lastCode: w.lastCode }
      : { type: w.type, ...base };
  }

  private publish(subject: string, event: MeshEvent): void {
    let body: Uint8Array;
    try {
      body = encodeBody(event);
    } catch (e) {
      this.logger.error({ err: e, type: event.type }, "could not encode a mesh event");
      return;
    }
    this.published++;
    this.sink(subject, body);
  }
}
