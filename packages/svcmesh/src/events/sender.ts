// How an encoded event leaves the process: a JetStream publish (acknowledged, so a lost
// event is noticed and retried, with a message id so a retry is stored once) while the
// events stream exists; a plain NATS publish (live subscribers only) when JetStream is
// not there. Failures are logged, never thrown: events must not break calls.
import { type JetStreamClient, type NatsConnection, nuid } from "nats";
import type { Logger } from "pino";

export interface SenderOptions {
  /**
   * Makes sure the stream exists (or just checks for it); resolves when events can be
   * stored, rejects when they cannot (then they go out as plain publishes).
   */
  prepare: () => Promise<unknown>;
  /** Events in flight at once; beyond that they are dropped and counted (default 1000). */
  maxInFlight?: number;
  /** Budget of one JetStream publish (default 2000 ms). */
  publishTimeoutMs?: number;
  /** JetStream publish attempts per event (default 3). */
  attempts?: number;
  /** After JetStream was found missing, how long before looking again (default 60 s). */
  recheckMs?: number;
}

export interface SenderStats {
  inFlight: number;
  stored: number;
  plain: number;
  failed: number;
  dropped: number;
}

type Mode = "unknown" | "jetstream" | "plain";

export class EventSender {
  private mode: Mode = "unknown";
  private preparing: Promise<void> | undefined;
  private recheckAt = 0;
  private js: JetStreamClient | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly counters = { stored: 0, plain: 0, failed: 0, dropped: 0 };
  private droppedSinceLog = 0;
  private closed = false;
  private readonly maxInFlight: number;
  private readonly publishTimeoutMs: number;
  private readonly attempts: number;
  private readonly recheckMs: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    private readonly options: SenderOptions,
  ) {
    this.maxInFlight = options.maxInFlight ?? 1000;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 2000;
    this.attempts = options.attempts ?? 3;
    this.recheckMs = options.recheckMs ?? 60_000;
  }

  /** Sends in the background; never throws. */
  send(subject: string, body: Uint8Array): void {
    if (this.closed || this.nc.isClosed()) {
      this.counters.dropped++;
      return;
    }
    if (this.inFlight.size >= this.maxInFlight) {
      this.counters.dropped++;
      if (this.droppedSinceLog++ === 0) this.logger.warn({ maxInFlight: this.maxInFlight }, "mesh events are backing up; dropping some");
      return;
    }
    const p: Promise<void> = this.deliver(subject, body)
      .catch((e: unknown) => {
        this.counters.failed++;
        this.logger.warn({ err: e, subject }, "could not publish a mesh event");
      })
      .finally(() => {
        this.inFlight.delete(p);
        if (this.inFlight.size === 0) this.droppedSinceLog = 0;
      });
    this.inFlight.add(p);
  }

  stats(): SenderStats {
    return { inFlight: this.inFlight.size, ...this.counters };
  }

  /** Waits (at most `timeoutMs`) for events in flight; later sends are dropped. */
  async close(timeoutMs = 2000): Promise<void> {
    this.closed = true;
    if (this.inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.allSettled([...this.inFlight]), timeout]);
    clearTimeout(timer);
    if (this.inFlight.size > 0) this.logger.warn({ unsent: this.inFlight.size }, "closing with mesh events still unsent");
  }

  private async deliver(subject: string, body: Uint8Array): Promise<void> {
    await this.ready();
    if (this.mode !== "jetstream") {
      this.nc.publish(subject, body);
      this.counters.plain++;
      return;
    }
    const msgID = nuid.next();
    for (let attempt = 1; ; attempt++) {
      try {
        this.js ??= this.nc.jetstream();
        await this.js.publish(subject, body, { msgID, timeout: this.publishTimeoutMs });
        this.counters.stored++;
        return;
      } catch (e) {
        if (attempt >= this.attempts || this.nc.isClosed()) throw e;
        // 503: nothing stores the subject (the stream was deleted, or a cluster is
        // electing a leader). Look again once; the message id keeps a retry single.
        if ((e as { code?: unknown }).code === "503") this.forget();
        await sleep(100 * 4 ** (attempt - 1));
        await this.ready();
        if (this.mode !== "jetstream") {
          this.nc.publish(subject, body);
          this.counters.plain++;
          return;
        }
      }
    }
  }

  /** Learns, once (again after recheckMs when it failed), whether events can be stored. */
  private ready(): Promise<void> | void {
    if (this.mode === "jetstream") return;
    if (this.mode === "plain" && Date.now() < this.recheckAt) return;
    this.preparing ??= this.options.prepare()
      .then(() => {
        this.mode = "jetstream";
      })
      .catch((e: unknown) => {
        if (this.mode !== "plain") {
          this.logger.warn({ err: e }, "mesh events are not stored durably (sent as plain NATS messages)");
        }
        this.mode = "plain";
        this.recheckAt = Date.now() + this.recheckMs;
      })
      .finally(() => {
        this.preparing = undefined;
      });
    return this.preparing;
  }

  private forget(): void {
    if (this.mode === "jetstream") this.mode = "unknown";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
