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
import { manager, streamInfo } from "../jetstream/stream.js";
import { AUDIT_STREAM, type AuditStreamOptions, auditStreamWindowMs, ensureAuditStream } from "./record.js";

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

const DEFAULT_RESEND_HORIZON_MS = 10 * 60_000;
/** Re-sends stop this long before a stream's duplicate window ends (a send takes time to be stored). */
const WINDOW_MARGIN_MS = 5_000;

/**
 * Checks connect()'s audit options before anything connects: a BAD_REQUEST naming the
 * option for anything that cannot work, including a re-send horizon that does not stay
 * below the duplicate window of the stream this process would create (a record re-sent
 * after the window would be stored twice).
 */
export function checkAuditOptions(options: AuditOptions | undefined): void {
  if (options === undefined || options.enabled === false) return;
  const bad = (what: string) => new MeshError("BAD_REQUEST", `audit.${what}`);
  const whole = (name: keyof AuditOptions, min: number) => {
    const v = options[name];
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= min)) throw bad(`${name} must be a whole number ≥ ${min}, not ${JSON.stringify(v)}`);
  };
  whole("maxBacklog", 1);
  whole("maxInFlight", 1);
  whole("ackTimeoutMs", 1);
  whole("resendHorizonMs", 1);
  whole("closeTimeoutMs", 0);
  if (options.whenFull !== undefined && options.whenFull !== "drop" && options.whenFull !== "refuse") {
    throw bad(`whenFull must be "drop" or "refuse", not ${JSON.stringify(options.whenFull)}`);
  }
  const windowMs = auditStreamWindowMs(options.stream);
  const horizonMs = options.resendHorizonMs ?? DEFAULT_RESEND_HORIZON_MS;
  if (options.createStream !== false && horizonMs > windowMs - WINDOW_MARGIN_MS) {
    throw bad(`resendHorizonMs (${horizonMs} ms) must stay at least ${WINDOW_MARGIN_MS} ms below the stream's duplicate window (${windowMs} ms), or a late re-send would be stored twice`);
  }
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
  private readonly resendHorizonMs: number;

  constructor(
    nc: NatsConnection,
    private readonly logger: Logger,
    inboxPrefix: string,
    private readonly options: AuditOptions = {},
  ) {
    this.failClosed = options.whenFull === "refuse";
    this.resendHorizonMs = options.resendHorizonMs ?? DEFAULT_RESEND_HORIZON_MS;
    this.maxBacklog = options.maxBacklog ?? 10_000;
    this.publisher = new AckedPublisher(nc, logger, inboxPrefix, {
      what: "audit record",
      // Failing closed, admits() bounds the backlog instead: a record of a call already
      // running when the backlog filled is kept, so it may pass maxBacklog by those.
      maxBacklog: this.failClosed ? Number.POSITIVE_INFINITY : this.maxBacklog,
      maxInFlight: options.maxInFlight ?? 256,
      ackTimeoutMs: options.ackTimeoutMs ?? 2_000,
      resendHorizonMs: this.resendHorizonMs,
      prepare: () => this.prepareStream(nc),
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

  /** Creates the stream (unless told not to) and fits the re-send horizon to its duplicate window. */
  private async prepareStream(nc: NatsConnection): Promise<void> {
    let windowNs: number | undefined;
    if (this.options.createStream === false) {
      // Someone else's stream: look at it if it is there yet. If it is not (or JetStream
      // is not), the records wait and are re-sent until it is, as they always did.
      windowNs = await manager(nc)
        .then((jsm) => streamInfo(jsm, AUDIT_STREAM))
        .then((info) => info?.config.duplicate_window, () => undefined);
    } else {
      windowNs = (await ensureAuditStream(nc, this.options.stream)).config.duplicate_window;
    }
    if (windowNs === undefined) return;
    const windowMs = Math.floor(windowNs / 1e6);
    const safeMs = windowMs - WINDOW_MARGIN_MS;
    if (this.resendHorizonMs <= safeMs) return;
    // An operator's stream with a shorter window: give up on records sooner (counted
    // lost) rather than ever store one twice.
    this.publisher.shortenResendHorizon(Math.max(0, safeMs));
    this.logger.error({ windowMs, resendHorizonMs: this.resendHorizonMs }, `the ${AUDIT_STREAM} stream's duplicate window (${windowMs} ms) is too short for audit.resendHorizonMs: re-sends now stop after ${Math.max(0, safeMs)} ms, so none is stored twice`);
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
