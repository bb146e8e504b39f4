// The end of the call chain and the only client code that touches NATS. Replies are
// correlated by hand: one wildcard subscription on a private inbox, a table of pending
// calls, and one coarse timer sweep instead of a timer per call (nc.request() spends
// about half its CPU on per-call timers and async stack traces). Each call is one
// promise, settled with the decoded reply or the MeshError it carries.
//
// Permission violations: a broker that enforces who may call what (broker/nats-config.ts)
// refuses a forbidden request without a word to the publisher: nats.js reports it only
// as a status event ({ type: "error", data: "PERMISSIONS_VIOLATION", permissionContext:
// { operation: "publish", subject } }). One status watcher per transport turns that into
// FORBIDDEN for the pending calls to that subject at once, instead of a TIMEOUT at the
// deadline. The success path pays nothing for it.
//
// Reconnects: nats.js empties its outbound buffer on every dial attempt, so whatever is
// published while it reconnects vanishes without an error (NATS-NOTES §1), and replies
// sent to this inbox while it was away are gone too. The same status watcher tracks the
// connection: calls made while it is down are held here, unsent, and published once it
// is back (they never left the process, so sending them then cannot run a handler
// twice). Calls already sent when it dropped may have lost their request or their reply:
// idempotent ones are sent again on reconnect, with the same request id (the callee's
// audit stores one record per id); the others may still be answered by a callee that
// replies after the reconnect, and otherwise fail with TIMEOUT at their deadline, since
// running them twice would be worse than not knowing.
//
// Reply tokens are reused: a token whose call was answered goes back to a free list and
// the next call takes the most recently freed one, so the reply subjects in use stay
// about as many as the calls in flight. A new subject per call misses nats-server's
// subject caches (its per-connection cache holds 512) on every reply: at 256 in flight,
// nats-server spent 7.0 µs per call with a new reply subject each time and 4.7 with 256
// reused ones (bench/reply-subjects.mjs, raw nats.js). A token is reused only when no
// other message should still arrive on it: its call was sent once and got the only
// answer it can get (the server's 503, or a mesh endpoint's reply: wire.ts onlyAnswer).
// One that timed out, was cancelled, failed, was sent again after a reconnect, or was
// answered by something else (a plain NATS subscriber on the subject may answer too)
// may still see a late answer, so it is never reused. On a reused token, only such an
// only-answer is taken: anything else may be a late second answer to an earlier call.
import { ErrorCode, Events, type Msg, type NatsConnection, type NatsError, nuid, type Subscription } from "nats";
import { MeshError, isMeshError } from "../errors.js";
import { Frame, FramePublisher, hpubFrame } from "../frames.js";
import { RequestHeaders, decodeReply, onlyAnswer, subjectNumber } from "../wire.js";
import { PendingTable } from "./pending-table.js";

/** How often pending calls are checked against their deadlines. */
const SWEEP_MS = 10;

/** What the transport needs of a call's attempt; it records the reply on it. */
export interface Attempt {
  readonly attemptDeadline: number;
  readonly signal: AbortSignal | undefined;
  /** Mesh-Request-Id, the same for every attempt of a call (see nextRequestId). */
  readonly requestId: string;
  /** The callee declared the endpoint idempotent: it may be sent again after a reconnect. */
  readonly idempotent: boolean;
  /** traceparent/tracestate header lines, or "". */
  readonly traceLines: string;
  reply: Msg | undefined;
}

/**
 * A call waiting for its reply. A class, not an object literal: entries live as long as
 * their call, so under load most survive a minor GC, and V8 may then pretenure a
 * literal's allocation site: every later entry is made in old space, where only full GCs
 * free it. Caller processes that drew that decision stayed ~1.4x dearer per call for
 * their whole life (bench/RESULTS.md, 2026-12-06). Instances of a class have no
 * allocation site, so they are always made young. The same holds for CallContext
 * (pipeline.ts) and Frame (frames.ts). Its fields are emptied once the call settles
 * (see release()).
 */
class Pending {
  onAbort: (() => void) | undefined = undefined;
  /** Published more than once (again after a reconnect): more than one answer may come. */
  resent = false;

  constructor(
    /** The reply token: the number after the inbox prefix. */
    readonly token: number,
    public attempt: Attempt,
    public resolve: (value: unknown) => void,
    public reject: (e: MeshError) => void,
    public deadline: number,
    public subject: string,
    public signal: AbortSignal | undefined,
    /** What was (or will be) published, kept for a send after a reconnect. */
    public frame: Frame,
    /** Made while the connection was down: not published yet. */
    public held: boolean,
    /** The token was used by an earlier call. */
    readonly reused: boolean,
  ) {}
}

export interface TransportOptions {
  inboxPrefix: string;
  callerName: string;
  /** Told when a request found nobody listening or timed out (mesh events, discovery refresh). */
  onFailure?: (code: "NO_RESPONDERS" | "TIMEOUT", subject: string) => void;
}

export class RequestTransport {
  private readonly id = nuid.next();
  private readonly prefix: string;
  /** The prefix's length in UTF-8 bytes: an inbox prefix is the user's, maybe not ASCII. */
  private readonly prefixBytes: number;
  private readonly pending = new PendingTable<Pending>();
  private readonly sub: Subscription;
  private readonly headers: RequestHeaders;
  private readonly frames: FramePublisher;
  /** The next never-used reply token. */
  private seq = 0;
  /** Tokens whose calls got their one answer, to be used again (most recent last). */
  private readonly freeTokens: number[] = [];
  private requestSeq = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly status: AsyncIterable<unknown> & { stop?(): void };
  /** Set when the server refused the reply subscription: every call would only time out. */
  private inboxRefused: MeshError | undefined;
  /** Between a disconnect and the reconnect: new calls are held, not published. */
  private offline = false;

  constructor(nc: NatsConnection, private readonly options: TransportOptions) {
    this.prefix = `${options.inboxPrefix}.${this.id}.`;
    this.prefixBytes = Buffer.byteLength(this.prefix);
    this.headers = new RequestHeaders(options.callerName);
    this.frames = new FramePublisher(nc);
    this.sub = nc.subscribe(`${this.prefix}*`, {
      callback: (err, msg) => {
        if (err) this.onInboxError(err);
        else this.onReply(msg);
      },
    });
    this.status = nc.status() as AsyncIterable<unknown> & { stop?(): void };
    void this.watchStatus();
  }

  /** A request id unique across the mesh (`<nuid>.<n>`), for one logical call. */
  nextRequestId(): string {
    return `${this.id}.r${(this.requestSeq++).toString(36)}`;
  }

  /**
   * Sends one attempt; its reply comes back on a token of this transport's inbox.
   * `body` is copied before this returns (it may be the encoder's shared buffer).
   */
  send(subject: string, body: Uint8Array, attempt: Attempt, headerLines = ""): Promise<unknown> {
    const { attemptDeadline: deadline, signal } = attempt;
    if (signal?.aborted) return Promise.reject(abortError(subject, signal));
    if (this.inboxRefused) return Promise.reject(this.inboxRefused);
    const reused = this.freeTokens.length > 0;
    const token = reused ? this.freeTokens.pop()! : this.seq++;
    return new Promise<unknown>((resolve, reject) => {
      const tail = this.headers.tail(deadline, attempt.requestId, headerLines, attempt.traceLines);
      // A fresh buffer per call, so keeping it for a later send is safe.
      const frame = hpubFrame(subject, this.prefix + token, this.headers.head, tail, body);
      const p = new Pending(token, attempt, resolve, reject, deadline, subject, signal, frame, this.offline, reused);
      if (!p.held) {
        try {
          this.frames.publish(frame);
        } catch (e) {
          this.freeTokens.push(token); // nothing was sent on it
          reject(publishError(e, subject));
          return;
        }
      }
      if (signal) {
        p.onAbort = () => this.fail(token, abortError(subject, signal));
        signal.addEventListener("abort", p.onAbort, { once: true });
      }
      this.pending.add(p);
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    });
  }

  /** Fails every pending call (connection closing). */
  close(reason: string): void {
    const error = new MeshError("UNAVAILABLE", reason);
    this.pending.forEach((p) => this.fail(p.token, error));
    this.sub.unsubscribe();
    this.status.stop?.();
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private take(token: number): Pending | undefined {
    const p = this.pending.take(token);
    if (!p) return undefined; // late reply after a timeout or cancel
    if (p.onAbort) p.signal!.removeEventListener("abort", p.onAbort);
    return p;
  }

  private onReply(msg: Msg): void {
    const token = subjectNumber(msg, this.prefixBytes);
    const waiting = this.pending.get(token);
    if (!waiting) return; // late reply after a timeout or cancel
    const only = onlyAnswer(msg);
    if (waiting.reused && !only) return; // maybe a second answer to this token's earlier call (see the top)
    const p = this.take(token)!;
    if (only && !p.resent) this.freeTokens.push(token);
    p.attempt.reply = msg;
    let value: unknown;
    try {
      value = decodeReply(msg, p.subject);
    } catch (e) {
      if (isMeshError(e) && e.code === "NO_RESPONDERS") this.options.onFailure?.("NO_RESPONDERS", p.subject);
      p.reject(e as MeshError);
      release(p);
      return;
    }
    p.resolve(value);
    release(p);
  }

  private async watchStatus(): Promise<void> {
    try {
      for await (const s of this.status) {
        const type = (s as { type?: unknown }).type;
        if (type === Events.Disconnect) this.offline = true;
        else if (type === Events.Reconnect) this.onReconnect();
        const ctx = permissionContext(s);
        if (ctx?.operation === "publish") this.onPublishRefused(ctx.subject);
      }
    } catch {
      // the connection closed
    }
  }

  /** Sends the held calls, and again the idempotent ones whose request or reply may have been lost. */
  private onReconnect(): void {
    this.offline = false;
    this.pending.forEach((p) => {
      if (!p.held && !p.attempt.idempotent) return;
      if (!p.held) p.resent = true;
      p.held = false;
      try {
        this.frames.publish(p.frame);
      } catch (e) {
        this.fail(p.token, publishError(e, p.subject));
      }
    });
  }

  /** The server refused a publish: the pending calls to that subject will never be answered. */
  private onPublishRefused(subject: string): void {
    this.pending.forEach((p) => {
      if (p.subject === subject) this.fail(p.token, forbidden(subject, `publish to ${subject}`));
    });
  }

  /** The server refused the reply subscription (wrong inbox prefix for this user): fail fast from now on. */
  private onInboxError(err: NatsError): void {
    if (err.code !== ErrorCode.PermissionsViolation) return;
    const inbox = `${this.prefix}*`;
    this.inboxRefused = new MeshError(
      "FORBIDDEN",
      `the NATS server refused the reply inbox ${inbox}: connect with the inbox prefix this user may subscribe to (nats.inboxPrefix)`,
      { cause: err, details: { subject: inbox }, retryable: false },
    );
    const refused = this.inboxRefused;
    this.pending.forEach((p) => this.fail(p.token, refused));
  }

  private fail(token: number, error: MeshError): void {
    const p = this.take(token);
    if (!p) return;
    p.reject(error);
    release(p);
  }

  private sweep(): void {
    if (this.pending.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const now = Date.now();
    this.pending.forEach((p) => {
      if (p.deadline > now) return;
      if (p.held) {
        // Never sent: the connection stayed down until the deadline.
        this.fail(p.token, new MeshError("UNAVAILABLE", `could not send to ${p.subject} before the deadline: no connection to NATS (reconnecting)`, { details: { subject: p.subject, neverSent: true } }));
      } else {
        this.fail(p.token, new MeshError("TIMEOUT", `no reply from ${p.subject} before the deadline`));
        this.options.onFailure?.("TIMEOUT", p.subject);
      }
    });
  }
}

const SETTLED_ATTEMPT: Attempt = { attemptDeadline: 0, signal: undefined, requestId: "", idempotent: false, traceLines: "", reply: undefined };
const SETTLED_FRAME = new Frame(new Uint8Array(0), "", "", 0, 0, 0);
const settled = (): void => {};

/**
 * Empties a settled call's entry. Dead objects that were already promoted can still
 * point at it until the next full GC (a Map's rehashed tables keep their old entries,
 * for instance), and young objects they point at count as live in every minor GC. An
 * entry that kept its call's context, frame and promise functions kept all of them, and
 * the reply they led to, alive to be promoted in turn, call after call: once V8 started
 * promoting, the caller spent 9.5 µs per call instead of 6 (measured with a 24 MB buffer
 * in the process, which makes V8 promote early; a 1,000-rule policy did the same).
 */
function release(p: Pending): void {
  p.attempt = SETTLED_ATTEMPT;
  p.frame = SETTLED_FRAME;
  p.resolve = settled;
  p.reject = settled;
  p.signal = undefined;
  p.onAbort = undefined;
}

function abortError(subject: string, signal: AbortSignal): MeshError {
  return new MeshError("TIMEOUT", `call to ${subject} was cancelled`, { cause: signal.reason, retryable: false });
}

function forbidden(subject: string, what: string): MeshError {
  return new MeshError("FORBIDDEN", `the NATS server refused the ${what} (permissions violation)`, { details: { subject }, retryable: false });
}

/** The permission context nats.js puts on a PERMISSIONS_VIOLATION status event, if any. */
function permissionContext(s: unknown): { operation: string; subject: string } | undefined {
  const st = s as { type?: unknown; data?: unknown; permissionContext?: { operation?: unknown; subject?: unknown } };
  if (st?.type !== Events.Error || st.data !== ErrorCode.PermissionsViolation) return undefined;
  const ctx = st.permissionContext;
  if (typeof ctx?.operation !== "string" || typeof ctx.subject !== "string") return undefined;
  return { operation: ctx.operation, subject: ctx.subject };
}

function publishError(e: unknown, subject: string): MeshError {
  const code = (e as { code?: string }).code;
  if (code === "MAX_PAYLOAD_EXCEEDED") {
    return new MeshError("BAD_REQUEST", `request to ${subject} exceeds the server's max_payload`, { cause: e });
  }
  // Nothing left this process, so a retry cannot run the handler twice (see retry.ts).
  return new MeshError("UNAVAILABLE", `could not send to ${subject}: ${(e as Error).message}`, { cause: e, details: { subject, neverSent: true } });
}
