// Stores audit records in the SVC_AUDIT stream, each exactly once: every record is
// published with its request id as the JetStream message id, so a retried call (same id,
// maybe another instance) is stored once; storing, re-sending until acknowledged within
// `resendHorizonMs` (which must stay below the stream's duplicate window,
// audit/record.ts) and the bounded backlog are jetstream/acked-publisher.ts's.
// stats() and the svcmesh.audit.backlog gauge show the backlog.
//
// When a record cannot be kept (the backlog is full: JetStream is slow, unreachable or
// absent), `whenFull` decides: "drop" (the default) keeps serving and drops the new
// records, counted and logged; "refuse" fails closed: calls to audited services are
// turned away before their handler runs (endpoint.ts asks admits()), so every call that
// ran has its record, and the waiting records are kept and re-sent, never dropped.
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { isMeshError, MeshError } from "../errors.js";
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
  /**
   * When the backlog is full: "drop" new records and keep serving (default), or
   * "refuse" calls (UNAVAILABLE, before their handler runs) until records can be kept.
   */
  whenFull?: "drop" | "refuse";
}

/**
 * Records stored, re-sent, waiting; `dropped` also counts records refused while the
 * server has no JetStream; `refused` counts calls turned away under `whenFull: "refuse"`.
 */
export type AuditStats = AckedPublisherStats & { refused: number };

/** The audit option `whenFull`, checked: a BAD_REQUEST for anything but "drop" or "refuse". */
export function whenFullOf(options: AuditOptions | undefined): "drop" | "refuse" {
  const value = options?.whenFull ?? "drop";
  if (value !== "drop" && value !== "refuse") {
    throw new MeshError("BAD_REQUEST", `audit.whenFull must be "drop" or "refuse", not ${JSON.stringify(value)}`);
  }
  return value;
}

/** Without JetStream nothing can be stored: records are dropped (and counted) this long before looking again. */
const NO_JETSTREAM_PAUSE_MS = 60_000;

export class AuditWriter {
  private readonly publisher: AckedPublisher;
  /** Set while the server has no JetStream: records are dropped (and counted) until then. */
  private disabledUntil = 0;
  private dropped = 0;
  private refused = 0;
  private lastRefusalLog = 0;
  private readonly failClosed: boolean;
  private readonly maxBacklog: number;

  constructor(
    nc: NatsConnection,
    private readonly logger: Logger,
    inboxPrefix: string,
    private readonly options: AuditOptions = {},
  ) {
    this.failClosed = whenFullOf(options) === "refuse";
    this.maxBacklog = options.maxBacklog ?? 10_000;
    this.publisher = new AckedPublisher(nc, logger, inboxPrefix, {
      what: "audit record",
      // Failing closed, admits() bounds the backlog instead: a record of a call already
      // running when the backlog filled is kept, so it may pass maxBacklog by those.
      maxBacklog: this.failClosed ? Number.POSITIVE_INFINITY : this.maxBacklog,
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

  /**
   * Whether a call to an audited service may run now. Always, unless failing closed
   * with a full backlog: then the refusal is counted (and logged now and then).
   */
  admits(): boolean {
    if (!this.failClosed || this.publisher.backlog() < this.maxBacklog) return true;
    this.refused++;
    const now = Date.now();
    if (now - this.lastRefusalLog > 5_000) {
      this.lastRefusalLog = now;
      this.logger.error({ backlog: this.maxBacklog, refused: this.refused }, "audit backlog full: calls are refused until records can be stored (is JetStream reachable?)");
    }
    return false;
  }

  stats(): AuditStats {
    const s = this.publisher.stats();
    return { ...s, dropped: s.dropped + this.dropped, refused: this.refused };
  }

  /** Waits (up to closeTimeoutMs) for the backlog to be stored; what is left is counted lost. */
  close(): Promise<void> {
    return this.publisher.close(this.options.closeTimeoutMs ?? 5_000);
  }

  private onStreamFailure(e: unknown): "retry" | "release" {
    const message = isMeshError(e) ? e.message : String(e);
    // Failing closed, records are never let go: they wait (and calls are refused once
    // the backlog is full) until the stream can take them.
    if (/JetStream is not enabled/.test(message) && !this.failClosed) {
      // Nothing can be stored: say so once, drop what waits, look again in a minute.
      this.disabledUntil = Date.now() + NO_JETSTREAM_PAUSE_MS;
      this.logger.warn(`audit records are not stored: ${message}`);
      return "release";
    }
    this.logger.warn({ err: e }, `audit stream not ready: ${message}; retrying`);
    return "retry";
  }
}
