// Stores audit records in the SVC_AUDIT stream, each exactly once: every record is
// published with its request id as the JetStream message id, so a retried call (same id,
// maybe another instance) is stored once; storing, re-sending until acknowledged within
// `resendHorizonMs` (which must stay below the stream's duplicate window,
// audit/record.ts) and the bounded backlog are jetstream/acked-publisher.ts's.
// stats() and the svcmesh.audit.backlog gauge show the backlog; onStateChange() hears
// when records stop being kept and when they are stored again (mesh.ts makes those
// audit_degraded / audit_recovered events).
//
// When a record cannot be kept (the backlog is full: JetStream is slow, unreachable or
// absent), `whenFull` decides: "drop" (the default) keeps serving and drops the new
// records, counted and logged; "refuse" fails closed: calls to audited services are
// turned away before their handler runs (endpoint.ts asks admits()), so every call that
// ran has its record, and the waiting records are kept and re-sent, never dropped.
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { isMeshError, MeshError } from "../errors.js";
import { RepeatedLog } from "../logger.js";
import type { MeshEventOf } from "../events/schemas.js";
import { AckedPublisher, type AckedPublisherStats } from "../jetstream/acked-publisher.js";
import { lookAgain, manager, storageGone, streamInfo } from "../jetstream/stream.js";
import { AUDIT_STREAM, type AuditStreamOptions, auditStreamWindowMs, ensureAuditStream } from "./record.js";

/** `svc.audit.<service>` → `<service>`. */
function serviceOfSubject(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}

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

/**
 * The trail of `service` stopped keeping records (audit_degraded), or records of every
 * service are stored again after that (audit_recovered, once per service that degraded,
 * with the process's drops and refusals over the episode): mesh events without envelope.
 */
export type AuditStateChange = Omit<MeshEventOf<"audit_degraded">, "at" | "source"> | Omit<MeshEventOf<"audit_recovered">, "at" | "source">;

/** While degraded, how often to look whether records are stored again. */
const RECOVERY_CHECK_MS = 1_000;

interface Episode {
  since: number;
  droppedAtStart: number;
  refusedAtStart: number;
  /** Records acked (stored or duplicate) when records were last turned away. */
  ackedAtLastLoss: number;
  lastLossAt: number;
  services: Set<string>;
  timer: ReturnType<typeof setInterval>;
}

const DEFAULT_RESEND_HORIZON_MS = 10 * 60_000;
/** Re-sends stop this long before a stream's duplicate window ends (a send takes time to be stored). */
const WINDOW_MARGIN_MS = 5_000;

/**
 * The shortest SVC_AUDIT duplicate window that outlasts `resendHorizonMs` (default: the
 * writer's): with a shorter one a late re-send could be stored twice. The one rule for
 * connect()'s options, the writer, and `svcmesh doctor`.
 */
export function minAuditWindowMs(resendHorizonMs = DEFAULT_RESEND_HORIZON_MS): number {
  return resendHorizonMs + WINDOW_MARGIN_MS;
}

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
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= min)) throw bad(`${name} must be a whole number ≥ ${min}, not ${typeof v === "number" ? String(v) : JSON.stringify(v)}`);
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
  if (options.createStream !== false && windowMs < minAuditWindowMs(horizonMs)) {
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
  /** `whenFull` as the audit events name it. */
  private readonly mode: "drop" | "refuse";
  private readonly maxBacklog: number;
  private readonly resendHorizonMs: number;
  private episode: Episode | undefined;
  private readonly failureLog = new RepeatedLog();
  /** The re-send horizon an operator's shorter stream window imposed, once applied. */
  private shortenedTo: number | undefined;
  /** The stream was made or reconciled once; later looks only check it. */
  private prepared = false;
  private closed = false;
  private readonly listeners: Array<(change: AuditStateChange) => void> = [];

  constructor(
    nc: NatsConnection,
    private readonly logger: Logger,
    inboxPrefix: string,
    private readonly options: AuditOptions = {},
  ) {
    this.failClosed = options.whenFull === "refuse";
    this.mode = this.failClosed ? "refuse" : "drop";
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
      onReleased: (waiting) => {
        this.dropped += waiting.length;
        let n = waiting.length;
        for (const service of new Set(waiting.map((w) => serviceOfSubject(w.subject)))) {
          this.lost(service, "no_jetstream", n);
          n = 0;
        }
      },
    });
  }

  /** Hears when the trail stops keeping records and when it keeps them again. */
  onStateChange(listener: (change: AuditStateChange) => void): void {
    this.listeners.push(listener);
  }

  /** Queues one record (already encoded) for `subject` (`svc.audit.<service>`) under message id `id`. Never throws. */
  write(subject: string, id: string, body: Uint8Array): void {
    if (Date.now() < this.disabledUntil) {
      this.dropped++;
      this.lost(serviceOfSubject(subject), "no_jetstream", 1);
    } else if (!this.publisher.publish(subject, id, body)) {
      this.lost(serviceOfSubject(subject), "backlog_full", 1);
    }
  }

  /**
   * Whether a call to `service` (audited) may run now. Always, unless failing closed
   * with a full backlog: then the refusal is counted (and logged now and then).
   */
  admits(service: string): boolean {
    if (!this.failClosed || this.publisher.backlog() < this.maxBacklog) return true;
    this.refused++;
    const now = Date.now();
    if (now - this.lastRefusalLog > 5_000) {
      this.lastRefusalLog = now;
      this.logger.error({ backlog: this.maxBacklog, refused: this.refused }, "audit backlog full: calls are refused until records can be stored (is JetStream reachable?)");
    }
    this.lost(service, "backlog_full", 1);
    return false;
  }

  stats(): AuditStats {
    const s = this.publisher.stats();
    return { ...s, dropped: s.dropped + this.dropped, refused: this.refused };
  }

  /** Waits (up to closeTimeoutMs) for the backlog to be stored; what is left is counted lost. */
  close(): Promise<void> {
    this.closed = true;
    clearInterval(this.episode?.timer);
    return this.publisher.close(this.options.closeTimeoutMs ?? 5_000);
  }

  /**
   * `n` records of `service` were just dropped (or, failing closed, its calls refused),
   * already counted: starts an episode, or extends it.
   */
  private lost(service: string, reason: "backlog_full" | "no_jetstream", n: number): void {
    if (this.closed) return;
    const now = Date.now();
    let episode = this.episode;
    if (episode === undefined) {
      const refusal = this.failClosed && reason === "backlog_full";
      episode = this.episode = {
        since: now,
        droppedAtStart: this.stats().dropped - (refusal ? 0 : n),
        refusedAtStart: this.refused - (refusal ? n : 0),
        ackedAtLastLoss: 0,
        lastLossAt: 0,
        services: new Set(),
        timer: setInterval(() => this.checkRecovered(), RECOVERY_CHECK_MS),
      };
      episode.timer.unref();
    }
    // Once per record turned away under overload: counters only, no stats object.
    episode.ackedAtLastLoss = this.publisher.acked();
    episode.lastLossAt = now;
    if (episode.services.has(service)) return;
    episode.services.add(service);
    this.tell({ type: "audit_degraded", service, mode: this.mode, reason, backlog: this.publisher.backlog(), maxBacklog: this.maxBacklog });
  }

  /** Recovered: a record was stored since the last one was turned away, none for a while, and the backlog is half empty. */
  private checkRecovered(): void {
    const episode = this.episode;
    if (episode === undefined) return;
    const now = Date.now();
    if (this.publisher.acked() <= episode.ackedAtLastLoss || now - episode.lastLossAt < RECOVERY_CHECK_MS || this.publisher.backlog() > this.maxBacklog / 2) return;
    clearInterval(episode.timer);
    this.episode = undefined;
    const s = this.stats();
    for (const service of episode.services) {
      this.tell({ type: "audit_recovered", service, mode: this.mode, dropped: s.dropped - episode.droppedAtStart, refused: s.refused - episode.refusedAtStart, durationMs: now - episode.since });
    }
  }

  private tell(change: AuditStateChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (e) {
        this.logger.error({ err: e }, "an audit state listener failed");
      }
    }
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
    } else if (this.prepared) {
      // Looked at again (acks went missing): made again if gone, not reconciled again.
      windowNs = (await lookAgain(nc, AUDIT_STREAM, "audit records", () => ensureAuditStream(nc, this.options.stream))).config.duplicate_window;
    } else {
      windowNs = (await ensureAuditStream(nc, this.options.stream)).config.duplicate_window;
      this.prepared = true;
    }
    if (windowNs === undefined) return;
    const windowMs = Math.floor(windowNs / 1e6);
    const safeMs = windowMs - WINDOW_MARGIN_MS;
    if (windowMs >= minAuditWindowMs(this.resendHorizonMs) || this.shortenedTo === Math.max(0, safeMs)) return;
    // An operator's stream with a shorter window: give up on records sooner (counted
    // lost) rather than ever store one twice. (Said once: the stream is looked at again
    // whenever acks go missing.)
    this.shortenedTo = Math.max(0, safeMs);
    this.publisher.shortenResendHorizon(Math.max(0, safeMs));
    this.logger.error({ windowMs, resendHorizonMs: this.resendHorizonMs }, `the ${AUDIT_STREAM} stream's duplicate window (${windowMs} ms) is too short for audit.resendHorizonMs: re-sends now stop after ${Math.max(0, safeMs)} ms, so none is stored twice`);
  }

  private onStreamFailure(e: unknown): "retry" | "release" {
    const message = isMeshError(e) ? e.message : String(e);
    // Failing closed, records are never let go: they wait (and calls are refused once
    // the backlog is full) until the stream can take them.
    if (storageGone(e) === "no_jetstream" && !this.failClosed) {
      // Nothing can be stored: say so once, drop what waits, look again in a minute.
      this.disabledUntil = Date.now() + NO_JETSTREAM_PAUSE_MS;
      this.logger.warn(`audit records are not stored: ${message}`);
      return "release";
    }
    // Retried every second or so (e.g. a broker config that lets services store into the
    // stream but not create it, before the operator has): said once a minute.
    const logged = this.failureLog.admit(message);
    if (logged) {
      const hint = /Permissions Violation.*STREAM\.CREATE/.test(message) ? " (this service may not create it: run `svcmesh apply` as an operator, which creates it)" : "";
      this.logger.warn({ err: e, heldBack: logged.held }, `audit stream not ready: ${message}${hint}; retrying`);
    }
    return "retry";
  }
}
