// How an encoded event leaves the process: stored in the events stream while it exists,
// each event exactly once (a message id, re-sent until JetStream acknowledges it: a
// replicated stream answers 503 for seconds while it elects a leader, and nats.js drops
// what is published while it reconnects; see jetstream/acked-publisher.ts), or as a
// plain NATS publish (live subscribers only) while JetStream or the stream is not
// there, looking again every recheckMs. Failures are logged, never thrown: events must
// not break calls.
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { AckedPublisher, connectionInboxPrefix, type Outgoing } from "../jetstream/acked-publisher.js";
import { storageGone } from "../jetstream/stream.js";

export interface SenderOptions {
  /**
   * Makes sure the stream exists (or just checks for it); resolves when events can be
   * stored, rejects when they cannot (then they go out as plain publishes).
   */
  prepare: () => Promise<unknown>;
  /** Events not yet stored at most; beyond that they are dropped and counted (default 1000). */
  maxInFlight?: number;
  /** How long to wait for JetStream's ack before re-sending (default 2000 ms). */
  ackTimeoutMs?: number;
  /**
   * How long an event is re-sent before it is counted as failed (default 60 s). Keep it
   * below the stream's duplicate window (2 minutes by default, events/stream.ts), or a
   * late re-send could be stored twice.
   */
  resendHorizonMs?: number;
  /** After JetStream was found missing, how long before looking again (default 60 s). */
  recheckMs?: number;
}

export interface SenderStats {
  /** Events waiting to be stored (queued, or sent and not acknowledged yet). */
  inFlight: number;
  stored: number;
  /** Re-sends JetStream recognised as already stored. */
  duplicates: number;
  resent: number;
  plain: number;
  /** Given up after the re-send horizon, left unsent at close, or a plain publish that threw. */
  failed: number;
  dropped: number;
}

/** How long events wait for a stream that cannot be looked at (an outage, an election) before going out plain. */
const OUTAGE_WAIT_MS = 15_000;

export class EventSender {
  private readonly publisher: AckedPublisher;
  /** Until then events go out as plain publishes (JetStream or the stream was missing). */
  private plainUntil = 0;
  private closed = false;
  /** The stream took events at least once. */
  private stored = false;
  /** When looking at the stream began to fail (0: it did not). */
  private failingSince = 0;
  private readonly counters = { plain: 0, failed: 0, dropped: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    options: SenderOptions,
  ) {
    const recheckMs = options.recheckMs ?? 60_000;
    this.publisher = new AckedPublisher(nc, logger, connectionInboxPrefix(nc), {
      what: "mesh event",
      maxBacklog: options.maxInFlight ?? 1000,
      maxInFlight: 256,
      ackTimeoutMs: options.ackTimeoutMs ?? 2000,
      resendHorizonMs: options.resendHorizonMs ?? 60_000,
      prepare: () => options.prepare().then(() => {
        this.plainUntil = 0;
        this.stored = true;
        this.failingSince = 0;
      }),
      onPrepareFailed: (e) => {
        // Once events were stored, the stream is looked at again whenever an ack is
        // missing: a short outage or a leader election is waited out (events wait, as
        // their acks do). JetStream or the stream gone, or a wait past OUTAGE_WAIT_MS,
        // sends them plain: live subscribers (discovery) must keep hearing them.
        const now = Date.now();
        this.failingSince ||= now;
        const gone = storageGone(e);
        if (this.stored && gone === undefined && now - this.failingSince < OUTAGE_WAIT_MS) return "retry";
        if (this.plainUntil === 0) {
          // No JetStream is a setup (a development server), not a fault: its reason, no stack trace.
          if (gone === "no_jetstream") this.logger.warn({ reason: (e as Error).message }, "mesh events are not stored durably (sent as plain NATS messages): this NATS server has no JetStream");
          else this.logger.warn({ err: e }, "mesh events are not stored durably (sent as plain NATS messages)");
        }
        this.plainUntil = Date.now() + recheckMs;
        return "release";
      },
      onReleased: (waiting) => this.sendPlain(waiting),
    });
  }

  /** Sends in the background; never throws. */
  send(subject: string, body: Uint8Array): void {
    if (this.closed || this.nc.isClosed()) this.counters.dropped++;
    else if (Date.now() < this.plainUntil) this.sendPlain([{ subject, body }]);
    else this.publisher.publish(subject, "", body);
  }

  stats(): SenderStats {
    const s = this.publisher.stats();
    return {
      inFlight: s.backlog,
      stored: s.stored,
      duplicates: s.duplicates,
      resent: s.resent,
      plain: this.counters.plain,
      failed: s.lost + this.counters.failed,
      dropped: s.dropped + this.counters.dropped,
    };
  }

  /** Waits (at most `timeoutMs`) for events not yet stored; later sends are dropped. */
  async close(timeoutMs = 2000): Promise<void> {
    this.closed = true;
    await this.publisher.close(timeoutMs);
  }

  private sendPlain(events: readonly Outgoing[]): void {
    for (const { subject, body } of events) {
      try {
        this.nc.publish(subject, body);
        this.counters.plain++;
      } catch (e) {
        this.counters.failed++;
        this.logger.warn({ err: e, subject }, "could not publish a mesh event");
      }
    }
  }
}
