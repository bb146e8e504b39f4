// Workflows consuming mesh events: a durable pull consumer on SVC_EVENTS. An event is
// acknowledged (and the ack confirmed by the server) only after the handler
// succeeded; a handler that throws gets it again later (nak with a growing delay); a
// malformed event is terminated and logged so it cannot block the rest.
import { AckPolicy, type ConsumerConfig, type ConsumerInfo, type ConsumerMessages, DeliverPolicy, type JsMsg, type NatsConnection, nanos } from "nats";
import type { Logger } from "pino";
import { MeshError } from "../errors.js";
import { decodeEvent, eventMatches, eventsFilterSubject } from "./decode.js";
import { isMeshEventType, type MeshEventOf, type MeshEventType } from "./schemas.js";
import { apiCode, EVENTS_STREAM, manager } from "./stream.js";

export interface ConsumeOptions<T extends MeshEventType = MeshEventType> {
  /** The durable consumer's name ([A-Za-z0-9_-]): its position survives restarts; processes sharing it share the work. */
  durable: string;
  /** Event types wanted (default: every type). */
  types?: readonly T[];
  /** Services the events are about (default: every service). */
  services?: readonly string[];
  /** Where a NEW durable starts: every stored event (default) or only later ones. An existing durable resumes where it was. */
  deliver?: "all" | "new";
  /** How long the server waits for an ack before redelivering; kept alive while the handler runs (default 30 s). */
  ackWaitMs?: number;
  /** Deliveries per event before the server gives up on it (default: unlimited, so nothing is lost). */
  maxDeliver?: number;
  /** Delay before an event whose handler threw comes again; doubles per delivery (default 1 s)... */
  retryDelayMs?: number;
  /** ...up to this (default 60 s). */
  maxRetryDelayMs?: number;
  /** Events pulled at a time (default 32). */
  batch?: number;
}

/** Where a delivered event came from: for idempotent handlers and logs. */
export interface EventDelivery {
  subject: string;
  /** Position in the stream: unique per event. */
  streamSeq: number;
  /** 1 on the first delivery, 2 after one redelivery, ... */
  deliveryCount: number;
}

export type EventHandler<T extends MeshEventType> = (event: MeshEventOf<T>, delivery: EventDelivery) => unknown;

export interface EventConsumer {
  readonly durable: string;
  /** Stops pulling, lets the handler in progress finish and ack, hands unhandled events back; resolves when done. */
  stop(): Promise<void>;
}

const NAME = /^[A-Za-z0-9_-]{1,200}$/;
const CONSUMER_NOT_FOUND = 10014;

export async function consumeEvents<T extends MeshEventType>(
  nc: NatsConnection,
  logger: Logger,
  options: ConsumeOptions<T>,
  handler: EventHandler<T>,
): Promise<EventConsumer> {
  const o = checkOptions(options, handler);
  const jsm = await manager(nc);
  const config = await upsertConsumer(nc, o, jsm);
  const consumer = new DurableEventConsumer(nc, logger.child({ durable: o.durable }), o, handler, config);
  consumer.start();
  return consumer;
}

interface Checked<T extends MeshEventType> extends Required<Omit<ConsumeOptions<T>, "types" | "services">> {
  types: ReadonlySet<string>;
  services: ReadonlySet<string>;
  filter: string;
}

function checkOptions<T extends MeshEventType>(o: ConsumeOptions<T>, handler: unknown): Checked<T> {
  const bad = (what: string) => new MeshError("BAD_REQUEST", `events.consume(): ${what}`);
  if (typeof o?.durable !== "string" || !NAME.test(o.durable)) throw bad("durable must be a name of letters, digits, - and _");
  if (typeof handler !== "function") throw bad("a handler function is required");
  // A string would be iterated letter by letter, and a durable acks away what it skips.
  if (o.types !== undefined && !Array.isArray(o.types)) throw bad("types must be an array of event types");
  if (o.services !== undefined && !Array.isArray(o.services)) throw bad("services must be an array of service names");
  for (const t of o.types ?? []) if (!isMeshEventType(t)) throw bad(`unknown event type ${JSON.stringify(t)}`);
  for (const s of o.services ?? []) if (typeof s !== "string" || !NAME.test(s)) throw bad(`invalid service ${JSON.stringify(s)}`);
  if (o.deliver !== undefined && o.deliver !== "all" && o.deliver !== "new") throw bad('deliver must be "all" or "new"');
  const positive = (v: number | undefined, name: string, min = 1) => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) throw bad(`${name} must be a whole number ≥ ${min}`);
    return v;
  };
  return {
    durable: o.durable,
    types: new Set(o.types ?? []),
    services: new Set(o.services ?? []),
    filter: eventsFilterSubject(o.types, o.services),
    deliver: o.deliver ?? "all",
    ackWaitMs: positive(o.ackWaitMs, "ackWaitMs", 1000) ?? 30_000,
    maxDeliver: o.maxDeliver === -1 ? -1 : positive(o.maxDeliver, "maxDeliver") ?? -1,
    retryDelayMs: positive(o.retryDelayMs, "retryDelayMs", 0) ?? 1000,
    maxRetryDelayMs: positive(o.maxRetryDelayMs, "maxRetryDelayMs", 0) ?? 60_000,
    batch: positive(o.batch, "batch") ?? 32,
  };
}

/**
 * Creates the durable, or updates the one that exists (filter, ack wait, max
 * deliveries) keeping its start position: the server refuses to change a durable's
 * deliver policy, and a restarted workflow must resume, not start over.
 */
async function upsertConsumer(nc: NatsConnection, o: Checked<MeshEventType>, jsm: Awaited<ReturnType<typeof manager>>): Promise<ConsumerInfo> {
  for (let attempt = 0; attempt < 3; attempt++) {
    let existing: ConsumerInfo | undefined;
    try {
      existing = await jsm.consumers.info(EVENTS_STREAM, o.durable);
    } catch (e) {
      if (apiCode(e) !== CONSUMER_NOT_FOUND) throw consumerError(o.durable, e);
    }
    if (existing?.config.deliver_subject) {
      throw new MeshError("BAD_REQUEST", `events.consume(): ${o.durable} is a push consumer on ${EVENTS_STREAM}; choose another durable name`);
    }
    const config: Partial<ConsumerConfig> = {
      durable_name: o.durable,
      description: "svcmesh events workflow consumer",
      ack_policy: AckPolicy.Explicit,
      filter_subject: o.filter,
      ack_wait: nanos(o.ackWaitMs),
      max_deliver: o.maxDeliver,
      deliver_policy: existing?.config.deliver_policy ?? (o.deliver === "new" ? DeliverPolicy.New : DeliverPolicy.All),
    };
    if (existing?.config.opt_start_seq !== undefined) config.opt_start_seq = existing.config.opt_start_seq;
    if (existing?.config.opt_start_time !== undefined) config.opt_start_time = existing.config.opt_start_time;
    try {
      return await jsm.consumers.add(EVENTS_STREAM, config);
    } catch (e) {
      // Another process created it meanwhile with another start: read theirs and retry.
      if (existing === undefined && attempt < 2 && !nc.isClosed()) continue;
      throw consumerError(o.durable, e);
    }
  }
  throw consumerError(o.durable, new Error("the durable kept changing"));
}

function consumerError(durable: string, e: unknown): MeshError {
  return new MeshError("UNAVAILABLE", `events.consume(): cannot set up durable ${durable}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

class DurableEventConsumer<T extends MeshEventType> implements EventConsumer {
  readonly durable: string;
  private messages: ConsumerMessages | undefined;
  private stopping = false;
  private running: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    private readonly o: Checked<T>,
    private readonly handler: EventHandler<T>,
    private readonly info: ConsumerInfo,
  ) {
    this.durable = o.durable;
  }

  start(): void {
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.messages?.stop();
    this.wake?.();
    await this.running;
  }

  /** Pulls until stopped; a broken pull is set up again after a growing pause (never a busy loop). */
  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping && !this.nc.isClosed()) {
      try {
        const consumer = await this.nc.jetstream().consumers.get(EVENTS_STREAM, this.info.name);
        if (this.stopping) break;
        this.messages = await consumer.consume({ max_messages: this.o.batch });
        if (this.stopping) this.messages.stop(); // stop() came while the pull was being set up
        for await (const m of this.messages) {
          if (this.stopping) {
            m.nak(); // pulled but not handled: back to the server at once, for the next consumer
            continue;
          }
          await this.handle(m);
          failures = 0;
        }
        if (this.stopping) break;
        throw new Error("the pull ended unexpectedly");
      } catch (e) {
        if (this.stopping || this.nc.isClosed()) break;
        failures++;
        const pauseMs = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
        this.logger.warn({ err: e, pauseMs }, "mesh events consumer failed; pulling again after a pause");
        await this.pause(pauseMs);
      }
    }
    await this.messages?.close();
  }

  private async handle(m: JsMsg): Promise<void> {
    const decoded = decodeEvent(m.subject, m.data, m.info.timestampNanos / 1e6);
    if (decoded.kind === "malformed") {
      this.logger.warn({ subject: m.subject, seq: m.seq, reason: decoded.reason }, "skipping a malformed mesh event");
      m.term();
      return;
    }
    // Types this version does not know, and what a wildcard filter let through: skip.
    if (decoded.kind === "unknown" || !eventMatches(decoded.event.type, decoded.event.service, this.o.types, this.o.services)) {
      m.ack();
      return;
    }
    const delivery: EventDelivery = { subject: m.subject, streamSeq: m.seq, deliveryCount: m.info.deliveryCount };
    // A long handler keeps its event: tell the server we are working on it.
    const keepAlive = setInterval(() => m.working(), Math.max(500, this.o.ackWaitMs / 2)).unref();
    try {
      await this.handler(decoded.event as MeshEventOf<T>, delivery);
    } catch (e) {
      clearInterval(keepAlive);
      const delayMs = Math.min(this.o.maxRetryDelayMs, this.o.retryDelayMs * 2 ** Math.min(delivery.deliveryCount - 1, 20));
      this.logger.warn({ err: e, type: decoded.event.type, seq: m.seq, deliveryCount: delivery.deliveryCount, delayMs }, "mesh event handler failed; the event comes again");
      m.nak(delayMs);
      return;
    }
    clearInterval(keepAlive);
    try {
      await m.ackAck(); // confirmed: once this resolves, a restart will not see the event again
    } catch (e) {
      this.logger.warn({ err: e, seq: m.seq }, "ack not confirmed; the event may come again");
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
