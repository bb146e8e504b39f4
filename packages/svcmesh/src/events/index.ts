// Mesh events, as `mesh.events`: publish state changes and coalesced per-call counts
// on `svc.events.<type>.<service>`, keep them in the SVC_EVENTS JetStream stream, and
// consume them durably from workflows.
//
// The stream is created by whoever needs it first, with the defaults below unless an
// operator chose otherwise: lazily before this process publishes its first event and
// before its first consume(), or by `svcmesh events` / `ensureStream()`. An existing
// stream is never changed except by an explicit ensureStream(options).
import type { NatsConnection, StreamInfo } from "nats";
import type { Logger } from "pino";
import { type ConsumeOptions, consumeEvents, type EventConsumer, type EventHandler } from "./consumer.js";
import { EventPublisher, type PublisherOptions, type PublisherStats } from "./publisher.js";
import type { CoalescedEventType, EmitInput, MeshEventType } from "./schemas.js";
import { EventSender, type SenderStats } from "./sender.js";
import { ensureEventsStream, EVENTS_STREAM, type EventsStreamOptions, manager } from "./stream.js";
import { MeshError } from "../errors.js";
import { lookAgain } from "../jetstream/stream.js";
import { parseEventSubject } from "./decode.js";

/** One token of an event subject, as schemas.ts subjectToken() makes them. */
const EVENT_TOKEN = /^[A-Za-z0-9_-]+$/;

export interface MeshEventsOptions extends PublisherOptions {
  /**
   * Create the stream when it is missing (default true). With false, events are
   * stored only if someone else created the stream; consume() then fails without it.
   */
  createStream?: boolean;
  /** Used when this process is the one creating the stream. */
  stream?: EventsStreamOptions;
  /** Events being published at once; beyond that they are dropped and counted (default 1000). */
  maxInFlight?: number;
  /** How long close() waits for events still being published (default 2000 ms). */
  closeTimeoutMs?: number;
}

export interface MeshEventsStats extends PublisherStats {
  sender: SenderStats;
  consumers: number;
}

export class MeshEvents {
  private readonly publisher: EventPublisher;
  private readonly sender: EventSender;
  private readonly consumers = new Set<EventConsumer>();
  private streamReady: Promise<StreamInfo> | undefined;
  /** The sender's first look at the stream succeeded. */
  private prepared = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    source: string,
    private readonly options: MeshEventsOptions = {},
  ) {
    this.sender = new EventSender(nc, logger, {
      // Asked at the first event, and again whenever acks go missing: then only a look
      // (made again if it is gone), never the first time's reconciling of its config.
      prepare: () => {
        if (!this.prepared) return this.lazyStream().then(() => void (this.prepared = true));
        const create = this.options.createStream === false ? undefined : () => ensureEventsStream(this.nc, this.options.stream);
        return lookAgain(this.nc, EVENTS_STREAM, "mesh events", create);
      },
      ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
    });
    this.publisher = new EventPublisher((subject, body) => this.sender.send(subject, body), logger, source, options);
  }

  /**
   * Publishes one state change (a breaker transition, an instance start or stop) now.
   * The caller guarantees once per transition. Never throws: problems are logged.
   */
  emit(event: EmitInput): void {
    this.publisher.emit(event);
  }

  /**
   * Sends an event already encoded (an instance announcement, which discovery reads
   * too) the way every event goes: stored once, re-sent until JetStream acknowledges it.
   */
  publishEncoded(subject: string, body: Uint8Array): void {
    // A malformed subject would make nats-server drop the connection, on every re-send.
    const where = typeof subject === "string" ? parseEventSubject(subject) : undefined;
    if (!where || !EVENT_TOKEN.test(where.type) || !EVENT_TOKEN.test(where.service)) {
      throw new MeshError("BAD_REQUEST", `events.publishEncoded(): ${JSON.stringify(subject)} is not an event subject (svc.events.<type>.<service>, letters, digits, - and _)`);
    }
    if (!(body instanceof Uint8Array)) throw new MeshError("BAD_REQUEST", "events.publishEncoded(): body must be a Uint8Array (msgpack)");
    this.sender.send(subject, body);
  }

  /**
   * Counts per-call events (`timeout`, `rate_limited`, `no_responders`,
   * `bulkhead_full`): one event per (type, caller, target, endpoint) per window
   * carries the count. Cheap enough for every failing call; never throws.
   */
  count(type: CoalescedEventType, caller: string, target: string, endpoint: string, n = 1): void {
    this.publisher.count(type, caller, target, endpoint, n);
  }

  /** Counts a call that failed after its last attempt (coalesced like count()). */
  retryExhausted(caller: string, target: string, endpoint: string, attempts: number, lastCode: string): void {
    this.publisher.retryExhausted(caller, target, endpoint, attempts, lastCode);
  }

  /**
   * Creates or updates the SVC_EVENTS stream: options given here that differ from an
   * existing stream's config are applied; nothing else changes. Throws MeshError
   * UNAVAILABLE without JetStream.
   */
  async ensureStream(options?: EventsStreamOptions): Promise<StreamInfo> {
    const info = await ensureEventsStream(this.nc, options);
    this.streamReady ??= Promise.resolve(info);
    return info;
  }

  /**
   * Runs `handler` for every event matching `types`/`services` through the durable
   * consumer `durable`: acknowledged once the handler resolves, redelivered (after a
   * growing delay) when it throws. Creates the stream first if it is missing.
   */
  async consume<T extends MeshEventType = MeshEventType>(options: ConsumeOptions<T>, handler: EventHandler<T>): Promise<EventConsumer> {
    if (this.closing) throw new MeshError("UNAVAILABLE", "events.consume(): the mesh connection is closing");
    if (this.options.createStream !== false) await this.lazyStream();
    const consumer = await consumeEvents(this.nc, this.logger, options, handler);
    const tracked: EventConsumer = {
      durable: consumer.durable,
      stop: () => {
        this.consumers.delete(tracked);
        return consumer.stop();
      },
    };
    this.consumers.add(tracked);
    return tracked;
  }

  /** Publishes every pending window now (close() does this too). */
  flush(): void {
    this.publisher.flush();
  }

  stats(): MeshEventsStats {
    return { ...this.publisher.stats(), sender: this.sender.stats(), consumers: this.consumers.size };
  }

  /** Stops the consumers, publishes pending windows and waits for them; call before the connection drains. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.consumers].map((c) => c.stop()));
      this.publisher.close();
      await this.sender.close(this.options.closeTimeoutMs ?? 2000);
    })();
    return this.closing;
  }

  /** The stream, created once with the configured defaults; a failure is retried next time. */
  private lazyStream(): Promise<StreamInfo> {
    if (!this.streamReady) {
      const ready = this.options.createStream === false
        ? manager(this.nc).then((jsm) => jsm.streams.info(EVENTS_STREAM))
        : ensureEventsStream(this.nc, this.options.stream);
      this.streamReady = ready;
      ready.catch(() => {
        if (this.streamReady === ready) this.streamReady = undefined;
      });
    }
    return this.streamReady;
  }
}

export * from "./schemas.js";
export { ensureEventsStream, EVENTS_STREAM, EVENTS_SUBJECTS, EVENTS_STREAM_DEFAULTS, type EventsStreamOptions } from "./stream.js";
export { type ConsumeOptions, type EventConsumer, type EventDelivery, type EventHandler } from "./consumer.js";
export { decodeEvent, eventMatches, eventsFilterSubject, parseEventSubject, type DecodedEvent } from "./decode.js";
export type { PublisherOptions, PublisherStats } from "./publisher.js";
export type { SenderStats } from "./sender.js";
