// Stores messages in a JetStream stream, each exactly once, for the audit writer and the
// mesh events sender:
// - every message is published with a JetStream message id (Nats-Msg-Id), so a re-sent
//   message is stored once;
// - every publish waits for JetStream's acknowledgement and is re-sent with the same id
//   until one arrives: a replicated stream answers 503 for seconds while it elects a
//   leader, and nats.js silently drops what is published while it reconnects;
// - re-sending stops after `resendHorizonMs` (the message is then counted as lost and
//   logged), which must stay below the stream's duplicate window, or a late re-send
//   would be stored twice;
// - the backlog is bounded (`maxBacklog`): beyond it new messages are refused, counted
//   and logged, never buffered without end.
// Acks are correlated by hand on one inbox subscription (like client/transport.ts):
// js.publish() would cost a timer and a request per message. Each send is one HPUB
// frame (frames.ts): the audit trail writes one message per handled call.
import { type Msg, type NatsConnection, nuid, type Subscription } from "nats";
import type { Logger } from "pino";
import { PendingTable } from "../client/pending-table.js";
import { DEFAULT_INBOX_PREFIX } from "../subjects.js";
import { FramePublisher, hpubFrame } from "../frames.js";
import { ackOutcome } from "./pub-ack.js";
import { asNatsHeaders, headerBlock, headerValue, subjectNumber } from "../wire.js";

/** A message as its owner handed it over. */
export interface Outgoing {
  readonly subject: string;
  readonly body: Uint8Array;
}

export interface AckedPublisherOptions {
  /** Messages queued or awaiting their ack at most; beyond, new ones are refused. */
  maxBacklog: number;
  /** Publishes awaiting an ack at once. */
  maxInFlight: number;
  /** How long to wait for an ack before re-sending. */
  ackTimeoutMs: number;
  /** How long a message is re-sent before it is given up as lost. */
  resendHorizonMs: number;
  /** What one message is, for logs ("audit record", "mesh event"). */
  what: string;
  /** Makes sure the stream can take messages; called before the first publish and after a failure. */
  prepare(): Promise<unknown>;
  /**
   * `prepare` failed. "retry": everything waits and prepare runs again in a second.
   * "release": the waiting messages go back to the owner (`onReleased`), which drops them
   * or sends them some other way, and the next publish prepares afresh.
   */
  onPrepareFailed(e: unknown): "retry" | "release";
  onReleased(waiting: readonly Outgoing[]): void;
}

export interface AckedPublisherStats {
  /** Messages queued or awaiting their ack. */
  backlog: number;
  inFlight: number;
  stored: number;
  /** Acks that said "duplicate": stored before (a re-send, or the same id from elsewhere). */
  duplicates: number;
  resent: number;
  /** Refused: the backlog was full, or the publisher was closed. */
  dropped: number;
  /** Given up after the re-send horizon, or left unsent at close. */
  lost: number;
}

interface Entry extends Outgoing {
  /** The JetStream message id, header-safe. */
  msgId: string;
  /** The header block's end after MSG_ID_HEAD (`<id>\r\n\r\n`) when the id is printable ASCII; else undefined (nc.publish). */
  headerTail: string | undefined;
  /** The reply token of its latest send (a number after the ack inbox prefix). */
  token: number;
  firstAt: number;
  /** Not before this time (backoff after a 503). */
  nextAt: number;
  sentAt: number;
  sends: number;
}

const SWEEP_MS = 50;
/** Backoff after a "no stream leader" answer: JetStream elections take seconds. */
const BACKOFF_MS = [100, 250, 500, 1000, 2000];
const PREPARE_RETRY_MS = 1_000;
/** The constant start of every message's header block, encoded once. */
const MSG_ID_HEAD = new TextEncoder().encode("NATS/1.0\r\nNats-Msg-Id: ");
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** A FIFO with O(1) shift: an array and a head index, compacted now and then. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  drain(): T[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return rest;
  }
}

export class AckedPublisher {
  /** Messages ready to send, oldest first. */
  private readonly queue = new Fifo<Entry>();
  /** Messages waiting out a backoff before they are re-sent. */
  private waiting: Entry[] = [];
  /** Sent and awaiting their ack, by reply token (tokens count up; see client/pending-table.ts). */
  private readonly inFlight = new PendingTable<Entry>(1024);
  private readonly prefix: string;
  /** The prefix's length in UTF-8 bytes: an inbox prefix is the user's, maybe not ASCII. */
  private readonly prefixBytes: number;
  private readonly frames: FramePublisher;
  private sub: Subscription | undefined;
  private seq = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private ready: Promise<void> | undefined;
  private streamOk = false;
  private closed = false;
  private idle: (() => void) | undefined;
  private lastDropLog = 0;
  private readonly counters = { stored: 0, duplicates: 0, resent: 0, dropped: 0, lost: 0 };
  private resendHorizonMs: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    inboxPrefix: string,
    private readonly options: AckedPublisherOptions,
  ) {
    this.prefix = `${inboxPrefix}.${nuid.next()}.`;
    this.resendHorizonMs = options.resendHorizonMs;
    this.prefixBytes = Buffer.byteLength(this.prefix);
    this.frames = new FramePublisher(nc);
  }

  /** Queues one message under JetStream message id `id` (a fresh one if empty). False when refused (closed, backlog full). */
  publish(subject: string, id: string, body: Uint8Array): boolean {
    if (this.closed) {
      this.counters.dropped++;
      return false;
    }
    if (this.backlog() >= this.options.maxBacklog) {
      this.counters.dropped++;
      const now = Date.now();
      if (now - this.lastDropLog > 5_000) {
        this.lastDropLog = now;
        this.logger.error({ backlog: this.options.maxBacklog, dropped: this.counters.dropped }, `${this.options.what} backlog full: new ones are being dropped (is JetStream reachable?)`);
      }
      return false;
    }
    const msgId = headerValue(id || nuid.next());
    const headerTail = PRINTABLE_ASCII.test(msgId) ? `${msgId}\r\n\r\n` : undefined;
    this.queue.push({ subject, body, msgId, headerTail, token: -1, firstAt: Date.now(), nextAt: 0, sentAt: 0, sends: 0 });
    this.pump();
    return true;
  }

  /** Re-sending stops sooner from now on (a stream's duplicate window found shorter than planned). */
  shortenResendHorizon(ms: number): void {
    this.resendHorizonMs = Math.min(this.resendHorizonMs, ms);
  }

  backlog(): number {
    return this.queue.length + this.waiting.length + this.inFlight.size;
  }

  /** Messages JetStream acknowledged, stored or duplicate. */
  acked(): number {
    return this.counters.stored + this.counters.duplicates;
  }

  stats(): AckedPublisherStats {
    return { backlog: this.backlog(), inFlight: this.inFlight.size, ...this.counters };
  }

  /** Waits (up to `timeoutMs`) for the backlog to be stored; what is left is counted lost. Later publishes are refused. */
  async close(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.backlog() > 0 && !this.nc.isClosed()) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (this.idle = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      clearTimeout(timer);
    }
    const left = this.backlog();
    if (left > 0) {
      this.counters.lost += left;
      this.logger.error({ left }, `${this.options.what}s not stored before close`);
    }
    this.queue.drain();
    this.waiting = [];
    this.inFlight.forEach((e) => this.inFlight.take(e.token));
    clearInterval(this.sweeper);
    this.sub?.unsubscribe();
  }

  /** The stream is ready and the ack inbox subscribed; on failure the owner decides what happens. */
  private prepare(): Promise<void> {
    this.ready ??= (async () => {
      await this.options.prepare();
      this.sub ??= this.nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => !err && this.onAck(msg) });
      this.streamOk = true;
      this.pump();
    })().catch((e: unknown) => {
      if (this.options.onPrepareFailed(e) === "release") {
        this.options.onReleased([...this.queue.drain(), ...this.waiting.splice(0)]);
        this.ready = undefined;
        this.finishIfIdle();
        return;
      }
      setTimeout(() => {
        this.ready = undefined;
        if (this.backlog() > 0 && !this.closed) void this.prepare();
        else if (this.closed) this.finishIfIdle();
      }, PREPARE_RETRY_MS).unref();
    });
    return this.ready;
  }

  private pump(): void {
    if (!this.streamOk) {
      void this.prepare();
      this.ensureSweeper();
      return;
    }
    const now = Date.now();
    while (this.inFlight.size < this.options.maxInFlight) {
      const e = this.queue.shift();
      if (!e) break;
      this.send(e, now);
    }
    this.ensureSweeper();
    this.finishIfIdle();
  }

  private send(e: Entry, now: number): void {
    if (this.nc.isClosed()) {
      this.counters.lost++;
      return;
    }
    // Sent before and waited (the stream was being looked at again) past the horizon: a
    // re-send now could land after the duplicate window and be stored twice.
    if (e.sends > 0 && this.givenUp(e, now)) return;
    const token = this.seq++;
    e.sentAt = now;
    if (e.sends++ > 0) this.counters.resent++;
    e.token = token;
    this.inFlight.add(e);
    try {
      const reply = this.prefix + token;
      if (e.headerTail !== undefined) this.frames.publish(hpubFrame(e.subject, reply, MSG_ID_HEAD, e.headerTail, e.body));
      else this.nc.publish(e.subject, e.body, { reply, headers: asNatsHeaders(headerBlock(`Nats-Msg-Id: ${e.msgId}\r\n`)) });
    } catch (err) {
      // Never sent: the sweep re-sends it after the ack timeout.
      this.logger.debug({ err }, `${this.options.what} publish failed`);
    }
  }

  private onAck(msg: Msg): void {
    const e = this.inFlight.take(subjectNumber(msg, this.prefixBytes));
    if (!e) return; // late ack of a message already re-sent and acknowledged
    const outcome = ackOutcome(msg.data);
    if (outcome === "stored") this.counters.stored++;
    else if (outcome === "duplicate") this.counters.duplicates++;
    else {
      this.retry(e, Date.now());
      this.checkStreamAgain();
    }
    this.pump();
  }

  private retry(e: Entry, now: number): void {
    if (this.givenUp(e, now)) return;
    e.nextAt = now + BACKOFF_MS[Math.min(e.sends - 1, BACKOFF_MS.length - 1)]!;
    this.waiting.push(e);
  }

  /** Past the re-send horizon: counted lost and logged, never sent again. */
  private givenUp(e: Entry, now: number): boolean {
    if (now - e.firstAt < this.resendHorizonMs) return false;
    this.counters.lost++;
    this.logger.error({ subject: e.subject, sends: e.sends }, `${this.options.what} given up after the re-send horizon`);
    return true;
  }

  private ensureSweeper(): void {
    if (this.sweeper || this.backlog() === 0) return;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = Date.now();
    let unanswered = false;
    this.inFlight.forEach((e) => {
      if (now - e.sentAt >= this.options.ackTimeoutMs) {
        this.inFlight.take(e.token);
        this.retry(e, now);
        unanswered = true;
      }
    });
    if (unanswered) this.checkStreamAgain();
    if (this.waiting.length > 0) {
      const still: Entry[] = [];
      for (const e of this.waiting) {
        if (e.nextAt <= now) this.queue.push(e);
        else still.push(e);
      }
      this.waiting = still;
    }
    if (this.backlog() === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
    this.pump();
  }

  /**
   * No ack, or a failed one: before anything is re-sent, look at the stream again
   * (prepare). Without JetStream, a live subscriber of the subject (discovery, for
   * instance announcements) would get every re-send, and the owner would never hear
   * that the stream is gone (events then go out plain; audit records are dropped or,
   * failing closed, wait). A stream that is only slow costs one stream-info request.
   */
  private checkStreamAgain(): void {
    if (!this.streamOk || this.closed) return;
    this.streamOk = false;
    this.ready = undefined;
  }

  private finishIfIdle(): void {
    if (this.idle && this.backlog() === 0) this.idle();
  }
}

/**
 * The inbox prefix the connection was opened with (mesh.ts sets a private one where the
 * broker's permissions require it): acks must come back under it. NatsConnectionImpl
 * keeps its options public; the NatsConnection interface does not declare them.
 */
export function connectionInboxPrefix(nc: NatsConnection): string {
  return (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix || DEFAULT_INBOX_PREFIX;
}
