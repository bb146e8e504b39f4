// Stores audit records in the SVC_AUDIT stream, each exactly once: every record is
// published with its request id as the JetStream message id, so a retried call (same id,
// maybe another instance) is stored once; storing, re-sending until acknowledged within
// `resendHorizonMs` (which must stay below the stream's duplicate window,
// audit/record.ts) and the bounded backlog are jetstream/acked-publisher.ts's.
// stats() and the svcmesh.audit.backlog gauge show the backlog.
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { isMeshError } from "../errors.js";
import { AckedPublisher, type AckedPublisherStats } from "../jetstream/acked-publisher.js";
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

/** Records stored, re-sent, waiting; `dropped` also counts records refused while the server has no JetStream. */
export type AuditStats = AckedPublisherStats;

/** Without JetStream nothing can be stored: records are dropped (and counted) this long before looking again. */
const NO_JETSTREAM_PAUSE_MS = 60_000;

export class AuditWriter {
  private readonly publisher: AckedPublisher;
  /** Set while the server has no JetStream: records are dropped (and counted) until then. */
  private disabledUntil = 0;
  private dropped = 0;

  constructor(
    nc: NatsConnection,
    private readonly logger: Logger,
    inboxPrefix: string,
    private readonly options: AuditOptions = {},
  ) {
    this.publisher = new AckedPublisher(nc, logger, inboxPrefix, {
      what: "audit record",
      maxBacklog: options.maxBacklog ?? 10_000,
      maxInFlight: options.maxInFlight ?? 256,
      ackTimeoutMs: options.ackTimeoutMs ?? 2_000,
      resendHorizonMs: options.resendHorizonMs ?? 10 * 60_000,
      prepare: () => (options.createStream === false ? Promise.resolve() : ensureAuditStream(nc, options.stream)),
      onPrepareFailed: (e) => this.onStreamFailure(e),
      onReleased: (waiting) => (this.dropped += waiting.length),
    });
  }

  /** Queues one record (already encoded) for `subject` under message id `id`. Never throws. */
  write(subject: string, id: string, body: Uint8Array): void {
    if (Date.now() < this.disabledUntil) this.dropped++;
    else this.publisher.publish(subject, id, body);
  }

  stats(): AuditStats {
    const s = this.publisher.stats();
    return { ...s, dropped: s.dropped + this.dropped };
  }

  /** Waits (up to closeTimeoutMs) for the backlog to be stored; what is left is counted lost. */
  close(): Promise<void> {
    return this.publisher.close(this.options.closeTimeoutMs ?? 5_000);
  }

  private onStreamFailure(e: unknown): "retry" | "release" {
    const message = isMeshError(e) ? e.message : String(e);
    if (/JetStream is not enabled/.test(message)) {
      // Nothing can be stored: say so once, drop what waits, look again in a minute.
      this.disabledUntil = Date.now() + NO_JETSTREAM_PAUSE_MS;
      this.logger.warn(`audit records are not stored: ${message}`);
      return "release";
    }
    this.logger.warn({ err: e }, `audit stream not ready: ${message}; retrying`);
    return "retry";
  }
}
