// Batches svc.trace records: one NATS message per subject per flush (a msgpack array),
// so a traced call costs an array push, not a publish. Bounded: beyond `maxBuffered`
// records wait at once, new ones are dropped and counted (trace records are a live
// feed; the audit trail is the durable record).
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { encodeTraceBatch, type TraceEvent, traceSubject } from "./event.js";

export interface TraceBufferOptions {
  /** How often buffered records are published (default 250 ms). */
  flushMs?: number;
  /** Most records waiting at once (default 10,000). */
  maxBuffered?: number;
  /** Records per message at most; a full batch is published at once (default 500). */
  maxBatch?: number;
}

export interface TraceBufferStats {
  buffered: number;
  published: number;
  dropped: number;
}

export class TraceBuffer {
  private readonly batches = new Map<string, TraceEvent[]>();
  private buffered = 0;
  private published = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly flushMs: number;
  private readonly maxBuffered: number;
  private readonly maxBatch: number;

  constructor(private readonly nc: NatsConnection, private readonly logger: Logger, options: TraceBufferOptions = {}) {
    this.flushMs = options.flushMs ?? 250;
    this.maxBuffered = options.maxBuffered ?? 10_000;
    this.maxBatch = options.maxBatch ?? 500;
  }

  add(event: TraceEvent): void {
    if (this.closed || this.buffered >= this.maxBuffered) {
      if (this.dropped++ === 0) this.logger.warn({ maxBuffered: this.maxBuffered }, "trace records are backing up; dropping some");
      return;
    }
    const subject = traceSubject(event.service, event.endpoint);
    let batch = this.batches.get(subject);
    if (!batch) this.batches.set(subject, (batch = []));
    batch.push(event);
    this.buffered++;
    if (batch.length >= this.maxBatch) this.publish(subject, batch);
    else this.timer ??= setTimeout(() => this.flush(), this.flushMs).unref();
  }

  /** Publishes everything buffered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const [subject, batch] of this.batches) this.publish(subject, batch);
  }

  stats(): TraceBufferStats {
    return { buffered: this.buffered, published: this.published, dropped: this.dropped };
  }

  /** Publishes what is buffered; later records are dropped. Call before the connection drains. */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private publish(subject: string, batch: TraceEvent[]): void {
    this.batches.delete(subject);
    this.buffered -= batch.length;
    if (this.nc.isClosed()) {
      this.dropped += batch.length;
      return;
    }
    try {
      this.nc.publish(subject, encodeTraceBatch(batch));
      this.published += batch.length;
    } catch (e) {
      this.dropped += batch.length;
      this.logger.warn({ err: e, subject, records: batch.length }, "could not publish trace records");
    }
  }
}
