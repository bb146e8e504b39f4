// Whole HPUB frames, written once and handed to nats.js in one piece. nc.publish()
// builds the HPUB line as a string, encodes it, and queues line, header block, body and
// CRLF as four buffers: about a kilobyte of garbage per message, a third of a call's.
// A frame written here is one slice of Node's buffer pool. It goes through nats.js's
// protocol internals (2.x: `protocol.sendCommand`, its `outBytes`/`outMsgs` counters),
// checked once per connection; should they change, nc.publish() sends the same bytes.
import { ErrorCode, NatsError, type NatsConnection } from "nats";
import { asNatsHeaders } from "./wire.js";

/**
 * One message as it goes on the wire: `HPUB <subject> [<reply>] <hlen> <total>\r\n<headers><body>\r\n`.
 * A class, not an object literal: a request's frame lives as long as its call (see
 * Pending in client/transport.ts).
 */
export class Frame {
  constructor(
    readonly bytes: Uint8Array,
    readonly subject: string,
    /** "" for none. */
    readonly reply: string,
    /** Where the header block starts and the body starts and ends in `bytes`. */
    readonly headerStart: number,
    readonly bodyStart: number,
    readonly bodyEnd: number,
  ) {}
}

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * A frame of `head` (the constant start of the header block, "NATS/1.0\r\n..."),
 * `tail` (its per-message ASCII end, closing with the blank line) and `body`, which is
 * copied: it may be a shared encoder buffer.
 */
export function hpubFrame(subject: string, reply: string, head: Uint8Array, tail: string, body: Uint8Array): Frame {
  const hlen = head.length + tail.length;
  const total = hlen + body.length;
  const line = reply ? `HPUB ${subject} ${reply} ${hlen} ${total}\r\n` : `HPUB ${subject} ${hlen} ${total}\r\n`;
  // Subjects are UTF-8 on the wire; ours are ASCII, but an inbox prefix is the user's.
  const headerStart = NON_ASCII.test(line) ? Buffer.byteLength(line) : line.length;
  const bodyStart = headerStart + hlen;
  const bodyEnd = bodyStart + body.length;
  // allocUnsafe: every byte is written below.
  const bytes = Buffer.allocUnsafe(bodyEnd + 2);
  bytes.write(line, 0, "utf8");
  bytes.set(head, headerStart);
  bytes.write(tail, headerStart + head.length, "latin1");
  bytes.set(body, bodyStart);
  bytes[bodyEnd] = 13;
  bytes[bodyEnd + 1] = 10;
  return new Frame(bytes, subject, reply, headerStart, bodyStart, bodyEnd);
}

/** What of nats.js's protocol handler a frame needs (nats.js 2.x). */
interface ProtocolInternals {
  sendCommand(cmd: Uint8Array): void;
  outBytes: number;
  outMsgs: number;
  noMorePublishing?: boolean;
  info?: { max_payload?: number; headers?: boolean };
}

function protocolOf(nc: NatsConnection): ProtocolInternals | undefined {
  const p = (nc as unknown as { protocol?: Partial<ProtocolInternals> }).protocol;
  return p && typeof p.sendCommand === "function" && typeof p.outBytes === "number" && typeof p.outMsgs === "number" ? (p as ProtocolInternals) : undefined;
}

/** Sends frames on one connection, with the checks and counters nc.publish() has. */
export class FramePublisher {
  private readonly protocol: ProtocolInternals | undefined;

  constructor(private readonly nc: NatsConnection) {
    this.protocol = protocolOf(nc);
  }

  /** Throws as nc.publish() would: connection closed or draining, message over max_payload. */
  publish(frame: Frame): void {
    const p = this.protocol;
    if (p === undefined) return this.publishPlain(frame);
    if (this.nc.isClosed()) throw NatsError.errorForCode(ErrorCode.ConnectionClosed);
    if (p.noMorePublishing) throw NatsError.errorForCode(ErrorCode.ConnectionDraining);
    const info = p.info;
    if (info && !info.headers) throw new NatsError("headers", ErrorCode.ServerOptionNotAvailable);
    const size = frame.bodyEnd - frame.headerStart;
    if (info?.max_payload !== undefined && size > info.max_payload) throw NatsError.errorForCode(ErrorCode.MaxPayloadExceeded);
    p.outBytes += size;
    p.outMsgs++;
    p.sendCommand(frame.bytes);
  }

  private publishPlain(frame: Frame): void {
    const headers = frame.bytes.subarray(frame.headerStart, frame.bodyStart);
    this.nc.publish(frame.subject, frame.bytes.subarray(frame.bodyStart, frame.bodyEnd), {
      ...(frame.reply ? { reply: frame.reply } : {}),
      headers: asNatsHeaders({ encode: () => headers }),
    });
  }
}
