// The end of the call chain and the only client code that touches NATS. Replies are
// correlated by hand: one wildcard subscription on a private inbox, a map of pending
// calls, and one coarse timer sweep instead of a timer per call (nc.request() spends
// about half its CPU on per-call timers and async stack traces).
import { type Msg, type NatsConnection, nuid, type Subscription } from "nats";
import { MeshError } from "../errors.js";
import { type EncodedHeaders, asNatsHeaders } from "../wire.js";

/** How often pending calls are checked against their deadlines. */
const SWEEP_MS = 10;

interface Pending {
  resolve(msg: Msg): void;
  reject(e: MeshError): void;
  deadline: number;
  subject: string;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export interface SendOptions {
  headers: EncodedHeaders;
  deadline: number;
  signal?: AbortSignal | undefined;
}

export class RequestTransport {
  private readonly id = nuid.next();
  private readonly prefix: string;
  private readonly pending = new Map<string, Pending>();
  private readonly sub: Subscription;
  private seq = 0;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly nc: NatsConnection, inboxPrefix: string) {
    this.prefix = `${inboxPrefix}.${this.id}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (_err, msg) => this.onReply(msg) });
  }

  /** A fresh reply token; it doubles as the request id, unique across the mesh. */
  nextToken(): string {
    return (this.seq++).toString(36);
  }

  /** Request ids are `<connection nuid>.<token>`. */
  requestId(token: string): string {
    return `${this.id}.${token}`;
  }

  send(subject: string, token: string, body: Uint8Array, opts: SendOptions): Promise<Msg> {
    if (opts.signal?.aborted) return Promise.reject(abortError(subject, opts.signal));
    return new Promise<Msg>((resolve, reject) => {
      const p: Pending = { resolve, reject, deadline: opts.deadline, subject, signal: opts.signal, onAbort: undefined };
      try {
        this.nc.publish(subject, body, { reply: this.prefix + token, headers: asNatsHeaders(opts.headers) });
      } catch (e) {
        reject(publishError(e, subject));
        return;
      }
      if (opts.signal) {
        const signal = opts.signal;
        p.onAbort = () => this.settle(token, undefined, abortError(subject, signal));
        signal.addEventListener("abort", p.onAbort, { once: true });
      }
      this.pending.set(token, p);
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    });
  }

  /** Fails every pending call (connection closing). */
  close(reason: string): void {
    for (const token of [...this.pending.keys()]) {
      this.settle(token, undefined, new MeshError("UNAVAILABLE", reason));
    }
    this.sub.unsubscribe();
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private onReply(msg: Msg): void {
    this.settle(msg.subject.slice(this.prefix.length), msg, undefined);
  }

  private settle(token: string, msg: Msg | undefined, error: MeshError | undefined): void {
    const p = this.pending.get(token);
    if (!p) return; // late reply after a timeout or cancel
    this.pending.delete(token);
    if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
    if (msg) p.resolve(msg);
    else p.reject(error!);
  }

  private sweep(): void {
    if (this.pending.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const now = Date.now();
    for (const [token, p] of this.pending) {
      if (p.deadline <= now) {
        this.settle(token, undefined, new MeshError("TIMEOUT", `no reply from ${p.subject} before the deadline`));
      }
    }
  }
}

function abortError(subject: string, signal: AbortSignal): MeshError {
  return new MeshError("TIMEOUT", `call to ${subject} was cancelled`, { cause: signal.reason, retryable: false });
}

function publishError(e: unknown, subject: string): MeshError {
  const code = (e as { code?: string }).code;
  if (code === "MAX_PAYLOAD_EXCEEDED") {
    return new MeshError("BAD_REQUEST", `request to ${subject} exceeds the server's max_payload`, { cause: e });
  }
  return new MeshError("UNAVAILABLE", `could not send to ${subject}: ${(e as Error).message}`, { cause: e });
}
