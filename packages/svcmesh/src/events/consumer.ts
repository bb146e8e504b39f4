// Workflows consuming mesh events: a durable pull consumer on SVC_EVENTS. An event is
// acknowledged (and the ack confirmed by the server) only after the handler
// succeeded, and events pulled and waiting their turn are kept alive meanwhile; a
// handler that throws gets it again later (nak with a growing delay); a malformed
// event is terminated and logged so it cannot block the rest.
import { AckPolicy, type Consumer, type ConsumerConfig, type ConsumerInfo, type ConsumerMessages, DeliverPolicy, type JsMsg, type NatsConnection, nanos } from "nats";
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { MeshError } from "../errors.js";
import { decodeEvent, EVENTS_ALL, eventMatches, eventsFilterSubject } from "./decode.js";
import { isMeshEventType, type MeshEventOf, type MeshEventType } from "./schemas.js";
import { apiCode, EVENTS_STREAM, manager } from "./stream.js";

export interface ConsumeOptions<T extends MeshEventType = MeshEventType> {
  /** The durable consumer's name ([A-Za-z0-9_-]): its position survives restarts; processes sharing it share the work and must ask for the same types and services. */
  durable: string;
  /** Event types wanted (default: every type). */
  types?: readonly T[];
  /** Services the events are about (default: every service). */
  services?: readonly string[];
  /** Where a NEW durable starts: every stored event (default) or only later ones. An existing durable resumes where it was. */
  deliver?: "all" | "new";
  /** How long the server waits for an ack before redelivering; kept alive while a pulled event waits its turn and while its handler runs (default 30 s). */
  ackWaitMs?: number;
  /** Deliveries per event before the server gives up on it (default: unlimited, so nothing is lost). */
  maxDeliver?: number;
  /** Delay before an event whose handler threw comes again; doubles per delivery (default 1 s)... */
  retryDelayMs?: number;
  /** ...up to this (default 60 s). */
  maxRetryDelayMs?: number;
  /** Events a process holds at a time, pulled and not yet handled or being handled (default 32). */
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

// Recorded in the durable's description: what it was made for (see madeFor).
const MADE_FOR = "svcmesh events ";

/**
 * What a durable is made for, as its description records it: the types and services
 * asked for (sorted, * for all). A long service list is recorded as its digest (a
 * description holds at most 4 KiB); equal lists still give equal descriptions.
 */
function madeFor(o: Checked<MeshEventType>): string {
  const list = (s: ReadonlySet<string>) => (s.size === 0 ? "*" : [...s].sort().join(","));
  let services = list(o.services);
  if (services.length > 1000) services = `sha256:${createHash("sha256").update(services).digest("hex").slice(0, 32)}`;
  return `${MADE_FOR}types=${list(o.types)} services=${services}`;
}

/**
 * Creates the durable, or updates the one that exists (filter, ack wait, max
 * deliveries, what it is made for) keeping its start position: the server refuses to
 * change a durable's deliver policy, and a restarted workflow must resume, not start
 * over. Refuses to change what a durable is made for while others pull from it.
 */
async function upsertConsumer(nc: NatsConnection, o: Checked<MeshEventType>, jsm: Awaited<ReturnType<typeof manager>>): Promise<ConsumerInfo> {
  const description = madeFor(o);
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
    if (existing) refuseToChangeShared(o, existing, description);
    const config: Partial<ConsumerConfig> = {
      durable_name: o.durable,
      description,
      ack_policy: AckPolicy.Explicit,
      filter_subject: o.filter,
      ack_wait: nanos(o.ackWaitMs),
      max_deliver: o.maxDeliver,
      deliver_policy: existing?.config.deliver_policy ?? (o.deliver === "new" ? DeliverPolicy.New : DeliverPolicy.All),
    };
    if (existing?.config.opt_start_seq !== undefined) config.opt_start_seq = existing.config.opt_start_seq;
    if (existing?.config.opt_start_time !== undefined) config.opt_start_time = existing.config.opt_start_time;
    if (existing !== undefined && literalToWider(existing.config.filter_subject, o.filter)) {
      // nats-server 2.9 updating a literal filter (one type, one service) to a wildcard
      // one delivers nothing from then on, and its position passes those events: made
      // anew instead, from its ack floor (what was delivered and not acked comes again).
      await jsm.consumers.delete(EVENTS_STREAM, o.durable).catch((e: unknown) => {
        throw consumerError(o.durable, e);
      });
      config.deliver_policy = DeliverPolicy.StartSequence;
      config.opt_start_seq = existing.ack_floor.stream_seq + 1;
      delete config.opt_start_time;
      return await jsm.consumers.add(EVENTS_STREAM, config).catch((e: unknown) => {
        throw consumerError(o.durable, e);
      });
    }
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

/**
 * Each process sharing a durable acks away the events it pulls and does not want, so
 * processes asking for different types or services lose each other's events; and
 * rewriting the one filter subject loses more. While others pull from the durable
 * (pull requests waiting on the server), it must stay made for what they asked. A
 * durable made by an older svcmesh records no types and services: only a different
 * filter shows it was made for something else.
 */
function refuseToChangeShared(o: Checked<MeshEventType>, existing: ConsumerInfo, description: string): void {
  const theirs = existing.config.description ?? "";
  const recorded = theirs.startsWith(`${MADE_FOR}types=`);
  const filter = existing.config.filter_subject || EVENTS_ALL; // none: the whole stream
  const differs = recorded ? theirs !== description : filter !== o.filter;
  if (!differs || existing.num_waiting === 0) return;
  const what = recorded ? theirs.slice(MADE_FOR.length) : `the filter ${filter}`;
  throw new MeshError(
    "BAD_REQUEST",
    `events.consume(): durable ${o.durable} is in use by other consumers made for ${what}, and this one asks for ${description.slice(MADE_FOR.length)}: ` +
      "processes sharing a durable must ask for the same types and services (each acknowledges away the events it does not want, " +
      "so the others would never get them); use another durable name, or stop the others first",
  );
}

/** A literal filter subject (no `*` or `>`) changing to one that has them. */
function literalToWider(from: string | undefined, to: string): boolean {
  return from !== undefined && from !== "" && from !== to && !/[*>]/.test(from) && /[*>]/.test(to);
}

/** Whether a NATS subject matches a filter subject (tokens, `*` and a final `>`). */
function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length || (f[i] !== "*" && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

function consumerError(durable: string, e: unknown): MeshError {
  return new MeshError("UNAVAILABLE", `events.consume(): cannot set up durable ${durable}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

// How long one pull waits on the server for events when there are none.
const PULL_EXPIRES_MS = 30_000;
// Stream sequences of handled events remembered to spot redelivered copies.
const HANDLED_MEMORY = 4096;

/**
 * One puller and one worker. Every message pulled sits in `unsettled`, kept alive with
 * working() until it is acked, naked or terminated: the events pulled with the one
 * being handled wait in our own queue, not in the client's buffer where nothing could
 * keep them alive (their ack wait ran out and the server redelivered events that were
 * then handled twice). A pull asks only for what fits in `batch` beside those in hand.
 */
class DurableEventConsumer<T extends MeshEventType> implements EventConsumer {
  readonly durable: string;
  private pulling: ConsumerMessages | undefined;
  private stopping = false;
  private pullerDone = false;
  private running: Promise<void> = Promise.resolve();
  private readonly waiters = new Set<() => void>();
  /** Pulled and not yet acked, naked or terminated: kept alive. */
  private readonly unsettled = new Set<JsMsg>();
  /** Pulled and not yet handled, in arrival order. */
  private readonly queue: JsMsg[] = [];
  /** Stream sequences whose handler succeeded (bounded, oldest forgotten first). */
  private readonly handled = new Set<number>();
  private warnedForeign = false;

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
    this.pulling?.stop();
    this.notify();
    await this.running;
  }

  private async run(): Promise<void> {
    // Shorter than the ack wait with a margin: a message pulled just after a tick still
    // gets its working() well before its ack wait runs out.
    const keepAlive = setInterval(() => {
      if (this.nc.isClosed()) return;
      for (const m of this.unsettled) {
        try {
          m.working();
        } catch {
          // the connection is closing: nothing to keep alive any more
        }
      }
    }, Math.max(250, Math.floor(this.o.ackWaitMs / 3))).unref();
    try {
      await Promise.all([this.pull(), this.work()]);
    } finally {
      clearInterval(keepAlive);
      // Pulled but not handled: back to the server at once, for the next consumer.
      for (const m of this.queue.splice(0)) this.settle(m, () => m.nak());
    }
  }

  /** Pulls while there is room in `batch`; a broken pull is set up again after a growing pause (never a busy loop). */
  private async pull(): Promise<void> {
    let failures = 0;
    let consumer: Consumer | undefined;
    try {
      while (!this.stopping && !this.nc.isClosed()) {
        // Pull again once half of the batch is free, not for every event handled.
        if (this.unsettled.size > Math.floor(this.o.batch / 2)) {
          await this.changed(60_000);
          continue;
        }
        const started = Date.now();
        let got = 0;
        try {
          consumer ??= await this.nc.jetstream().consumers.get(EVENTS_STREAM, this.info.name);
          if (this.stopping) break;
          this.pulling = await consumer.fetch({ max_messages: this.o.batch - this.unsettled.size, expires: PULL_EXPIRES_MS });
          if (this.stopping) this.pulling.stop(); // stop() came while the pull was being set up
          for await (const m of this.pulling) {
            got++;
            this.take(m);
          }
          // A pull ends when full or after PULL_EXPIRES_MS; one that ends at once and empty is a failure.
          if (got === 0 && Date.now() - started < 1_000 && !this.stopping) throw new Error("the pull ended at once without events");
          failures = 0;
        } catch (e) {
          if (this.stopping || this.nc.isClosed()) break;
          consumer = undefined;
          failures++;
          const pauseMs = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
          this.logger.warn({ err: e, pauseMs }, "mesh events consumer failed; pulling again after a pause");
          await this.pause(pauseMs);
        }
      }
    } finally {
      this.pullerDone = true;
      this.notify();
    }
  }

  private take(m: JsMsg): void {
    if (this.stopping) {
      m.nak(); // pulled but not handled: back to the server at once, for the next consumer
      return;
    }
    this.unsettled.add(m);
    this.queue.push(m);
    this.notify();
  }

  /** Handles the queue in order; after stop(), only the handler in progress finishes. */
  private async work(): Promise<void> {
    while (!this.stopping && !this.nc.isClosed()) {
      const m = this.queue.shift();
      if (m === undefined) {
        if (this.pullerDone) break;
        await this.changed(60_000);
        continue;
      }
      try {
        await this.handle(m);
      } catch (e) {
        // Only settling can throw here (the connection closed): the server redelivers it.
        this.unsettled.delete(m);
        this.logger.warn({ err: e, seq: m.seq }, "could not settle a mesh event; it may come again");
      }
      this.notify(); // room for the puller
    }
  }

  /** Stops keeping `m` alive, then acks, naks or terminates it. */
  private settle<R>(m: JsMsg, how: () => R): R {
    this.unsettled.delete(m);
    return how();
  }

  private async handle(m: JsMsg): Promise<void> {
    // A copy of an event already handled here (its ack was lost or came late): ack it
    // again without running the handler twice.
    if (m.info.deliveryCount > 1 && this.handled.has(m.seq)) {
      this.logger.debug({ seq: m.seq, deliveryCount: m.info.deliveryCount }, "mesh event already handled; acknowledging the copy");
      this.settle(m, () => m.ack());
      return;
    }
    // Outside the filter this process set: another process changed the durable for
    // other types or services (refused while we pull, but a process with all of its
    // batch in hand has no pull waiting). Those events are theirs: hand them back,
    // never ack them away.
    if (!subjectMatches(this.o.filter, m.subject)) {
      if (!this.warnedForeign) {
        this.warnedForeign = true;
        this.logger.warn({ subject: m.subject, filter: this.o.filter }, "another process changed this durable to get other events; handing them back, not skipping them: processes sharing a durable must ask for the same types and services");
      }
      this.settle(m, () => m.nak(this.retryDelayMs(m.info.deliveryCount)));
      return;
    }
    const decoded = decodeEvent(m.subject, m.data, m.info.timestampNanos / 1e6);
    if (decoded.kind === "malformed") {
      this.logger.warn({ subject: m.subject, seq: m.seq, reason: decoded.reason }, "skipping a malformed mesh event");
      this.settle(m, () => m.term());
      return;
    }
    // Types this version does not know, and what a wildcard filter let through: skip.
    if (decoded.kind === "unknown" || !eventMatches(decoded.event.type, decoded.event.service, this.o.types, this.o.services)) {
      this.settle(m, () => m.ack());
      return;
    }
    const delivery: EventDelivery = { subject: m.subject, streamSeq: m.seq, deliveryCount: m.info.deliveryCount };
    try {
      await this.handler(decoded.event as MeshEventOf<T>, delivery);
    } catch (e) {
      const delayMs = this.retryDelayMs(delivery.deliveryCount);
      this.logger.warn({ err: e, type: decoded.event.type, seq: m.seq, deliveryCount: delivery.deliveryCount, delayMs }, "mesh event handler failed; the event comes again");
      this.settle(m, () => m.nak(delayMs));
      return;
    }
    this.remember(m.seq);
    try {
      await this.settle(m, () => m.ackAck()); // confirmed: once this resolves, a restart will not see the event again
    } catch (e) {
      this.logger.warn({ err: e, seq: m.seq }, "ack not confirmed; the event may come again");
    }
  }

  /** Grows with each delivery: retryDelayMs, doubled per redelivery, at most maxRetryDelayMs. */
  private retryDelayMs(deliveryCount: number): number {
    return Math.min(this.o.maxRetryDelayMs, this.o.retryDelayMs * 2 ** Math.min(deliveryCount - 1, 20));
  }

  private remember(seq: number): void {
    this.handled.add(seq);
    if (this.handled.size > HANDLED_MEMORY) this.handled.delete(this.handled.values().next().value!);
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves at the next notify() or after `ms`. */
  private changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /** Waits `ms`, or less if stop() comes. */
  private async pause(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (!this.stopping && Date.now() < until) await this.changed(until - Date.now());
  }
}
