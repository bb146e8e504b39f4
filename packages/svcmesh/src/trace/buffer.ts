// Batches svc.trace records: one NATS message per endpoint per flush (see event.ts for
// the format), so a traced call costs a few encoded bytes, not a publish. Bounded: beyond `maxBuffered`
// records wait at once, new ones are dropped and counted (trace records are a live
// feed; the audit trail is the durable record).
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { TraceBatch, type TraceCall, traceSubject } from "./event.js";

export interface TraceBufferOptions {
  /** How often buffered records are published (default 250 ms). */
  flushMs?: number;
  /** Most records waiting at once (default 10,000). */
  maxBuffered?: number;
  /** Records per message at most; a full batch is published at once (default 500). */
  maxBatch?: number;
}

/** Who the records are from, and the sampling rate of their ok calls. */
export interface TraceSource {
  caller: string;
  rate: number;
}

export interface TraceBufferStats {
  buffered: number;
  published: number;
  dropped: number;
}

export class TraceBuffer {
  /** service → endpoint → the batch being filled (two lookups: no subject string per call). */
  private readonly batches = new Map<string, Map<string, TraceBatch>>();
  private buffered = 0;
  private published = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly flushMs: number;
  private readonly maxBuffered: number;
  private readonly maxBatch: number;

  constructor(private readonly nc: NatsConnection, private readonly logger: Logger, private readonly source: TraceSource, options: TraceBufferOptions = {}) {
    this.flushMs = options.flushMs ?? 250;
    this.maxBuffered = options.maxBuffered ?? 10_000;
    this.maxBatch = options.maxBatch ?? 500;
  }

  /** Buffers one call to `service.endpoint`, answered by `instance` ("" if none did). */
  add(service: string, endpoint: string, call: TraceCall, instance: string, version: string): void {
    if (this.closed || this.buffered >= this.maxBuffered) {
      if (this.dropped++ === 0) this.logger.warn({ maxBuffered: this.maxBuffered }, "trace records are backing up; dropping some");
      return;
    }
    let byEndpoint = this.batches.get(service);
    if (!byEndpoint) this.batches.set(service, (byEndpoint = new Map()));
    let batch = byEndpoint.get(endpoint);
    if (!batch) byEndpoint.set(endpoint, (batch = new TraceBatch({ caller: this.source.caller, service, endpoint, rate: this.source.rate })));
    this.buffered++;
    if (batch.add(call, instance, version) >= this.maxBatch) this.publish(batch);
    else this.timer ??= setTimeout(() => this.flush(), this.flushMs).unref();
  }

  /** Publishes everything buffered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const byEndpoint of this.batches.values()) for (const batch of byEndpoint.values()) this.publish(batch);
  }

  stats(): TraceBufferStats {
    return { buffered: this.buffered, published: this.published, dropped: this.dropped };
  }

  /** Publishes what is buffered; later records are dropped. Call before the connection drains. */
  close(): void {
    this.flush();
    this.closed = true;
  }

  private publish(batch: TraceBatch): void {
    const { service, endpoint } = batch.header;
    const byEndpoint = this.batches.get(service);
    byEndpoint?.delete(endpoint);
    if (byEndpoint?.size === 0) this.batches.delete(service);
    const records = batch.size;
    this.buffered -= records;
    if (this.nc.isClosed()) {
      this.dropped += records;
      return;
    }
    const subject = traceSubject(service, endpoint);
    try {
      this.nc.publish(subject, batch.encode());
      this.published += records;
    } catch (e) {
      this.dropped += records;
      this.logger.warn({ err: e, subject, records }, "could not publish trace records");
    }
  }
}
