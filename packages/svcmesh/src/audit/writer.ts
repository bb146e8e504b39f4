// Stores audit records in the SVC_AUDIT stream, each exactly once:
// - every record is published with its request id as the JetStream message id, so a
//   retried call (same id, maybe another instance) and a re-sent record are stored once;
// - every publish waits for JetStream's acknowledgement and is re-sent with the same id
//   until one arrives: a replicated stream answers 503 for seconds while it elects a
//   leader, and nats.js silently drops what is published while it reconnects;
// - re-sending stops after `resendHorizonMs` (the record is then counted as lost and
//   logged), which must stay below the stream's duplicate window (audit/record.ts);
// - the backlog is bounded (`maxBacklog`): beyond it new records are dropped, counted
//   and logged, never buffered without end. stats() and the svcmesh.audit.backlog
//   gauge show it.
// Acks are correlated by hand on one inbox subscription (like client/transport.ts):
// js.publish() would cost a timer and a request per record.
import { type Msg, type NatsConnection, nuid, type Subscription } from "nats";
import type { Logger } from "pino";
import { isMeshError } from "../errors.js";
import { asNatsHeaders, type EncodedHeaders, headerBlock, headerValue } from "../wire.js";
import { type AuditStreamOptions, ensureAuditStream } from "./record.js";

export interface AuditOptions {
  /** Write audit records for calls this process's services handle (default true). */
  enabled?: boolean;
  /** Create the SVC_AUDIT stream when it is missing (default true). */
  createStream?: boolean;
  /** Used when this process creates the stream. */
  stream?: AuditStreamOptions;
  /** Records queued or awaiting their ack at most; beyond, new ones are dropped (default 10,000). */
  maxBacklog?: number;
  /** Publishes awaiting an ack at once (default 256). */
  maxInFlight?: number;
  /** How long to wait for an ack before re-sending (default 2,000 ms). */
  ackTimeoutMs?: number;
  /** How long a record is re-sent before it is given up as lost (default 10 minutes). */
  resendHorizonMs?: number;
  /** How long close() waits for the backlog to be stored (default 5,000 ms). */
  closeTimeoutMs?: number;
}

export interface AuditStats {
  /** Records queued or awaiting their ack. */
  backlog: number;
  inFlight: number;
  stored: number;
  /** Acks that said "duplicate": the record was already stored (a retried call, a re-send). */
  duplicates: number;
  resent: number;
  /** Refused because the backlog was full. */
  dropped: number;
  /** Given up after the re-send horizon, or left unsent at close. */
  lost: number;
}

interface Entry {
  subject: string;
  body: Uint8Array;
  headers: EncodedHeaders;
  firstAt: number;
  /** Not before this time (backoff after a 503). */
  nextAt: number;
  sentAt: number;
  sends: number;
}

const SWEEP_MS = 50;
/** Backoff after a "no stream leader" answer: JetStream elections take seconds. */
const BACKOFF_MS = [100, 250, 500, 1000, 2000];
const decoder = new TextDecoder();

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

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

export class AuditWriter {
  /** Records ready to send, oldest first. */
  private readonly queue = new Fifo<Entry>();
  /** Records waiting out a backoff before they are re-sent. */
  private waiting: Entry[] = [];
  private readonly inFlight = new Map<string, Entry>();
  private readonly prefix: string;
  private sub: Subscription | undefined;
  private seq = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private ready: Promise<void> | undefined;
  private streamOk = false;
  private closed = false;
  private idle: (() => void) | undefined;
  private lastDropLog = 0;
  /** Set while the server has no JetStream: records are dropped (and counted) until then. */
  private disabledUntil = 0;
  private readonly counters = { stored: 0, duplicates: 0, resent: 0, dropped: 0, lost: 0 };
  private readonly maxBacklog: number;
  private readonly maxInFlight: number;
  private readonly ackTimeoutMs: number;
  private readonly resendHorizonMs: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    inboxPrefix: string,
    private readonly options: AuditOptions = {},
  ) {
    this.prefix = `${inboxPrefix}.${nuid.next()}.`;
    this.maxBacklog = options.maxBacklog ?? 10_000;
    this.maxInFlight = options.maxInFlight ?? 256;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 2_000;
    this.resendHorizonMs = options.resendHorizonMs ?? 10 * 60_000;
  }

  /** Queues one record (already encoded) for `subject` under message id `id`. Never throws. */
  write(subject: string, id: string, body: Uint8Array): void {
    if (this.closed || Date.now() < this.disabledUntil) {
      this.counters.dropped++;
      return;
    }
    if (this.backlog() >= this.maxBacklog) {
      this.counters.dropped++;
      const now = Date.now();
      if (now - this.lastDropLog > 5_000) {
        this.lastDropLog = now;
        this.logger.error({ backlog: this.maxBacklog, dropped: this.counters.dropped }, "audit backlog full: records are being dropped (is JetStream reachable?)");
      }
      return;
    }
    const headers = headerBlock(`Nats-Msg-Id: ${headerValue(id || nuid.next())}\r\n`);
    const now = Date.now();
    this.queue.push({ subject, body, headers, firstAt: now, nextAt: 0, sentAt: 0, sends: 0 });
    this.pump();
  }

  private backlog(): number {
    return this.queue.length + this.waiting.length + this.inFlight.size;
  }

  stats(): AuditStats {
    return { backlog: this.backlog(), inFlight: this.inFlight.size, ...this.counters };
  }

  /** Waits (up to closeTimeoutMs) for the backlog to be stored; what is left is counted lost. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.backlog() > 0 && !this.nc.isClosed()) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (this.idle = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.closeTimeoutMs ?? 5_000))),
      ]);
      clearTimeout(timer);
    }
    const left = this.backlog();
    if (left > 0) {
      this.counters.lost += left;
      this.logger.error({ records: left }, "audit records not stored before close");
    }
    this.queue.clear();
    this.waiting = [];
    this.inFlight.clear();
    clearInterval(this.sweeper);
    this.sub?.unsubscribe();
  }

  /** The stream exists (made if allowed) and the ack inbox is subscribed; retried on failure. */
  private prepare(): Promise<void> {
    this.ready ??= (async () => {
      if (this.options.createStream !== false) await ensureAuditStream(this.nc, this.options.stream);
      this.sub ??= this.nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => !err && this.onAck(msg) });
      this.streamOk = true;
      this.pump();
    })().catch((e: unknown) => {
      const message = isMeshError(e) ? e.message : String(e);
      if (/JetStream is not enabled/.test(message)) {
        // Nothing can be stored: say so once, drop what waits, look again in a minute.
        this.disabledUntil = Date.now() + 60_000;
        this.counters.dropped += this.queue.length + this.waiting.length;
        this.queue.clear();
        this.waiting = [];
        this.logger.warn(`audit records are not stored: ${message}`);
        this.ready = undefined;
        this.finishIfIdle();
        return;
      }
      this.logger.warn({ err: e }, `audit stream not ready: ${message}; retrying`);
      setTimeout(() => {
        this.ready = undefined;
        if (this.backlog() > 0 && !this.closed) void this.prepare();
        else if (this.closed) this.finishIfIdle();
      }, 1_000).unref();
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
    while (this.inFlight.size < this.maxInFlight) {
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
    const token = (this.seq++).toString(36);
    e.sentAt = now;
    if (e.sends++ > 0) this.counters.resent++;
    this.inFlight.set(token, e);
    try {
      this.nc.publish(e.subject, e.body, { reply: this.prefix + token, headers: asNatsHeaders(e.headers) });
    } catch (err) {
      // Never sent: the sweep re-sends it after the ack timeout.
      this.logger.debug({ err }, "audit publish failed");
    }
  }

  private onAck(msg: Msg): void {
    const token = msg.subject.slice(this.prefix.length);
    const e = this.inFlight.get(token);
    if (!e) return; // late ack of a record already re-sent and acknowledged
    this.inFlight.delete(token);
    const outcome = ackOutcome(msg);
    if (outcome === "stored") this.counters.stored++;
    else if (outcome === "duplicate") this.counters.duplicates++;
    else this.retry(e, Date.now());
    this.pump();
  }

  private retry(e: Entry, now: number): void {
    if (now - e.firstAt >= this.resendHorizonMs) {
      this.counters.lost++;
      this.logger.error({ subject: e.subject, sends: e.sends }, "audit record given up after the re-send horizon");
      return;
    }
    e.nextAt = now + BACKOFF_MS[Math.min(e.sends - 1, BACKOFF_MS.length - 1)]!;
    this.waiting.push(e);
  }

  private ensureSweeper(): void {
    if (this.sweeper || this.backlog() === 0) return;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, e] of this.inFlight) {
      if (now - e.sentAt >= this.ackTimeoutMs) {
        this.inFlight.delete(token);
        this.retry(e, now);
      }
    }
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

  private finishIfIdle(): void {
    if (this.idle && this.backlog() === 0) this.idle();
  }
}

/**
 * What a JetStream publish ack says: stored, duplicate (stored before), or retry (no
 * responders while a leader is elected, or an error such as "stream not found").
 */
function ackOutcome(msg: Msg): "stored" | "duplicate" | "retry" {
  if (msg.data.length === 0) return "retry"; // a status-only reply: 503 no responders
  try {
    const ack = JSON.parse(decoder.decode(msg.data)) as { error?: unknown; seq?: unknown; duplicate?: unknown };
    if (ack.error !== undefined || typeof ack.seq !== "number") return "retry";
    return ack.duplicate === true ? "duplicate" : "stored";
  } catch {
    return "retry";
  }
}
